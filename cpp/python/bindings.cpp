// The only bridge between Python and the core. Layering of the checks, one owner each:
//   Python (spqindex/_validate.py, index.py) converts types once (TypeError naming the argument);
//   this file checks memory layout and shapes against the index (dtype, ndim, C-contiguity,
//   columns, lengths) and query finiteness, without copying;
//   the core checks values (k, metric, codebooks, ids, codes) and throws std::invalid_argument
//   naming the argument (ValueError in Python).
// Outputs are allocated with the GIL held, compute runs without it.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "spqindex/checksum.h"
#include "spqindex/codes.h"
#ifdef SPQINDEX_WITH_CUDA
#include "spqindex/cuda.h"
#endif
#include "spqindex/encode.h"
#include "spqindex/id_filter.h"
#include "spqindex/index.h"
#include "spqindex/io.h"
#include "spqindex/io_error.h"
#include "spqindex/simd.h"
#include "spqindex/threads.h"

namespace py = pybind11;
using namespace spqindex;

namespace {

template <typename T>
const char* dtype_name() {
  if (std::is_same<T, float>::value) return "float32";
  if (std::is_same<T, int64_t>::value) return "int64";
  return "uint8";
}

/// Checks dtype, ndim and C-contiguity; returns the typed array without copying.
template <typename T>
py::array_t<T> strict(const py::array& a, const char* name, int ndim) {
  if (!py::dtype::of<T>().is(a.dtype()) &&
      !(a.dtype().kind() == py::dtype::of<T>().kind() && a.dtype().itemsize() == sizeof(T)))
    throw py::type_error(std::string(name) + ": expected dtype " + dtype_name<T>());
  if (a.ndim() != ndim)
    throw py::value_error(std::string(name) + ": expected a " + std::to_string(ndim) + "-d array");
  if (!(a.flags() & py::array::c_style))
    throw py::value_error(std::string(name) +
                          ": must be C-contiguous (use numpy.ascontiguousarray)");
  return py::reinterpret_borrow<py::array_t<T>>(a);
}

/// Hands a vector's buffer to numpy without copying it.
template <typename T>
py::array_t<T> to_numpy(std::vector<T>&& v, std::vector<py::ssize_t> shape) {
  auto* heap = new std::vector<T>(std::move(v));
  py::capsule owner(heap, [](void* p) { delete static_cast<std::vector<T>*>(p); });
  return py::array_t<T>(shape, heap->data(), owner);
}

const int64_t* optional_ids(const py::object& ids, size_t n, py::array_t<int64_t>* keep) {
  if (ids.is_none()) return nullptr;
  *keep = strict<int64_t>(ids.cast<py::array>(), "ids", 1);
  if (static_cast<size_t>(keep->shape(0)) != n)
    throw py::value_error("ids: length " + std::to_string(keep->shape(0)) +
                          " does not match the number of vectors " + std::to_string(n));
  return keep->data();
}

void check_dim(const py::array& a, const char* name, py::ssize_t want) {
  if (a.shape(1) != want)
    throw py::value_error(std::string(name) + ": expected " + std::to_string(want) +
                          " columns, got " + std::to_string(a.shape(1)));
}

/// True when no value is NaN or +-Inf (exponent bits all ones); no temporary, unlike numpy's
/// isfinite().all(), which costs ~1.4 us per call on a single query.
bool all_finite(const float* x, size_t n) {
  uint32_t bad = 0;
  for (size_t i = 0; i < n; i++) {
    uint32_t bits;
    std::memcpy(&bits, x + i, sizeof bits);
    bad |= static_cast<uint32_t>((bits & 0x7f800000u) == 0x7f800000u);
  }
  return bad == 0;
}

/// search(q, k) for host queries, shared by the CPU and GPU index: checks (finiteness included),
/// allocates (D, I) with the GIL held, searches without it.
template <typename IndexT, typename... Extra>
py::tuple search_host(IndexT& self, const py::array& q, py::ssize_t k, const Extra&... extra) {
  auto qa = strict<float>(q, "q", 2);
  check_dim(qa, "q", self.dim());
  const py::ssize_t nq = qa.shape(0);
  Index::check_k(static_cast<size_t>(nq), k);
  if (!all_finite(qa.data(), static_cast<size_t>(nq) * self.dim()))
    throw py::value_error("q: contains NaN or Inf (or values too large for float32)");
  py::array_t<float> D({nq, k});
  py::array_t<int64_t> I({nq, k});
  float* dp = D.mutable_data();
  int64_t* ip = I.mutable_data();
  {
    py::gil_scoped_release nogil;
    self.search(qa.data(), nq, k, dp, ip, extra...);
  }
  return py::make_tuple(D, I);
}

#ifdef SPQINDEX_WITH_CUDA
/// The GPU index (cuda.h). Host arrays follow the same strict rules as above; device inputs
/// come as a raw pointer + shape from spqindex/gpu.py (validated there, checked for finiteness
/// on the device).
void bind_cuda(py::module_& m) {
  using cuda::GpuIndex;
  m.attr("cuda_max_k") = GpuIndex::kMaxK;
  m.def("cuda_device_count", &cuda::device_count);
  m.def(
      "cuda_device_info",
      [](int device) {
        const cuda::DeviceInfo info = cuda::device_info(device);
        py::dict d;
        d["name"] = std::string(info.name);
        d["peak_bandwidth_gbs"] = info.peak_bandwidth_gbs;
        d["sm_count"] = info.sm_count;
        return d;
      },
      py::arg("device") = 0);
  py::class_<GpuIndex>(m, "GpuIndexCore")
      .def(py::init([](const Index& cpu, int device) {
             py::gil_scoped_release nogil;
             return std::make_unique<GpuIndex>(cpu, device);
           }),
           py::arg("index"), py::arg("device") = 0)
      .def_property_readonly("device", &GpuIndex::device)
      .def_property_readonly("ntotal", &GpuIndex::ntotal)
      .def_property_readonly("dim", &GpuIndex::dim)
      .def_property_readonly("last_search_ms", &GpuIndex::last_search_ms)
      .def("search", &search_host<GpuIndex>, py::arg("q"), py::arg("k"))
      .def(
          "search_ptr",
          [](GpuIndex& self, uintptr_t ptr, py::ssize_t nq, py::ssize_t k, uintptr_t stream) {
            if (nq < 0) throw py::value_error("nq: must be >= 0");
            Index::check_k(static_cast<size_t>(nq), k);
            py::array_t<float> D({nq, k});
            py::array_t<int64_t> I({nq, k});
            float* dp = D.mutable_data();
            int64_t* ip = I.mutable_data();
            {
              py::gil_scoped_release nogil;
              self.search_device(reinterpret_cast<const float*>(ptr), nq, k, dp, ip, stream);
            }
            return py::make_tuple(D, I);
          },
          py::arg("ptr"), py::arg("nq"), py::arg("k"), py::arg("stream") = 0)
      .def(
          "encode",
          [](GpuIndex& self, const py::array& x) {
            auto xa = strict<float>(x, "x", 2);
            check_dim(xa, "x", self.dim());
            const py::ssize_t n = xa.shape(0);
            py::array_t<uint8_t> codes({n, static_cast<py::ssize_t>(self.codebooks().code_size())});
            uint8_t* cp = codes.mutable_data();
            {
              py::gil_scoped_release nogil;
              self.encode(xa.data(), n, cp);
            }
            return codes;
          },
          py::arg("x"))
      .def(
          "encode_ptr",
          [](GpuIndex& self, uintptr_t ptr, py::ssize_t n, uintptr_t stream) {
            if (n < 0) throw py::value_error("n: must be >= 0");
            py::array_t<uint8_t> codes({n, static_cast<py::ssize_t>(self.codebooks().code_size())});
            uint8_t* cp = codes.mutable_data();
            {
              py::gil_scoped_release nogil;
              self.encode_device(reinterpret_cast<const float*>(ptr), n, cp, stream);
            }
            return codes;
          },
          py::arg("ptr"), py::arg("n"), py::arg("stream") = 0);
}
#endif

}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "spqindex native core: PQ encode, LUT and exact ADC top-k scan";

  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const IdNotFound& e) {
      PyErr_SetObject(PyExc_KeyError, py::int_(e.id).ptr());
    } catch (const IoError& e) {
      py::object err = py::reinterpret_steal<py::object>(PyObject_CallFunction(
          PyExc_OSError, "iss", e.err,
          (std::string(std::strerror(e.err)) + ": " + e.what()).c_str(), e.path.c_str()));
      PyErr_SetObject(reinterpret_cast<PyObject*>(Py_TYPE(err.ptr())), err.ptr());
    }
  });

  py::class_<IdFilter>(m, "IdFilterCore")
      .def(py::init([](const py::array& ids) {
             auto a = strict<int64_t>(ids, "ids", 1);
             return std::make_unique<IdFilter>(a.data(), static_cast<size_t>(a.shape(0)));
           }),
           py::arg("ids"))
      .def("__len__", [](const IdFilter& f) { return f.ids().size(); })
      .def("ids", [](const IdFilter& f) {
        std::vector<int64_t> v = f.ids();
        const py::ssize_t n = static_cast<py::ssize_t>(v.size());
        return to_numpy(std::move(v), {n});
      });

  py::class_<Index>(m, "IndexCore")
      .def(py::init([](const py::array& codebooks, const std::string& metric) {
             auto c = strict<float>(codebooks, "codebooks", 3);
             Codebooks cb(static_cast<int>(c.shape(0)), static_cast<int>(c.shape(1)),
                          static_cast<int>(c.shape(2)), c.data());
             return std::make_unique<Index>(std::move(cb), metric_from_string(metric));
           }),
           py::arg("codebooks"), py::arg("metric"))
      .def_property_readonly("ntotal", &Index::ntotal)
      .def_property_readonly("dim", &Index::dim)
      .def_property_readonly("M", [](const Index& i) { return i.codebooks().M; })
      .def_property_readonly("K", [](const Index& i) { return i.codebooks().K; })
      .def_property_readonly("nbits", [](const Index& i) { return i.codebooks().nbits; })
      .def_property_readonly("dsub", [](const Index& i) { return i.codebooks().dsub; })
      .def_property_readonly("code_size", &Index::code_size)
      .def_property_readonly("next_id", &Index::next_id)
      .def_property_readonly("read_only", &Index::read_only)
      .def_property_readonly("ids_stored", &Index::ids_stored)
      .def_property_readonly("metric", [](const Index& i) { return metric_name(i.metric()); })
      .def_property_readonly("codebooks",
                             [](const Index& i) {
                               const Codebooks& cb = i.codebooks();
                               std::vector<float> v = cb.centroids;
                               return to_numpy(std::move(v), {cb.M, cb.K, cb.dsub});
                             })
      .def(
          "add",
          [](Index& self, const py::array& x, const py::object& ids) {
            auto xa = strict<float>(x, "x", 2);
            check_dim(xa, "x", self.dim());
            const size_t n = xa.shape(0);
            py::array_t<int64_t> keep;
            const int64_t* id_ptr = optional_ids(ids, n, &keep);
            py::gil_scoped_release nogil;
            self.add(xa.data(), n, id_ptr);
          },
          py::arg("x"), py::arg("ids") = py::none())
      .def(
          "add_codes",
          [](Index& self, const py::array& codes, const py::object& ids) {
            auto ca = strict<uint8_t>(codes, "codes", 2);
            check_dim(ca, "codes", self.code_size());
            const size_t n = ca.shape(0);
            py::array_t<int64_t> keep;
            const int64_t* id_ptr = optional_ids(ids, n, &keep);
            py::gil_scoped_release nogil;
            self.add_codes(ca.data(), n, id_ptr);
          },
          py::arg("codes"), py::arg("ids") = py::none())
      .def(
          "search",
          [](const Index& self, const py::array& q, py::ssize_t k, const py::object& filter) {
            if (filter.is_none()) return search_host<const Index>(self, q, k);
            if (py::isinstance<IdFilter>(filter))
              return search_host<const Index>(self, q, k, filter.cast<const IdFilter&>());
            auto fa = strict<int64_t>(filter.cast<py::array>(), "filter", 1);
            return search_host<const Index>(self, q, k, fa.data(), fa.shape(0));
          },
          py::arg("q"), py::arg("k"), py::arg("filter") = py::none())
      .def(
          "range_search",
          [](const Index& self, const py::array& q, double radius) {
            auto qa = strict<float>(q, "q", 2);
            check_dim(qa, "q", self.dim());
            const py::ssize_t nq = qa.shape(0);
            if (!all_finite(qa.data(), static_cast<size_t>(nq) * self.dim()))
              throw py::value_error("q: contains NaN or Inf (or values too large for float32)");
            const float r = static_cast<float>(radius);
            if (!std::isfinite(r)) throw py::value_error("radius: must be finite (as a float32)");
            std::vector<int64_t> lims;
            std::vector<float> D;
            std::vector<int64_t> I;
            {
              py::gil_scoped_release nogil;
              self.range_search(qa.data(), nq, r, &lims, &D, &I);
            }
            const py::ssize_t total = static_cast<py::ssize_t>(I.size());
            return py::make_tuple(to_numpy(std::move(lims), {nq + 1}),
                                  to_numpy(std::move(D), {total}), to_numpy(std::move(I), {total}));
          },
          py::arg("q"), py::arg("radius"))
      .def(
          "encode",
          [](const Index& self, const py::array& x) {
            auto xa = strict<float>(x, "x", 2);
            check_dim(xa, "x", self.dim());
            const py::ssize_t n = xa.shape(0);
            py::array_t<uint8_t> codes({n, static_cast<py::ssize_t>(self.code_size())});
            uint8_t* cp = codes.mutable_data();
            {
              py::gil_scoped_release nogil;
              encode(self.codebooks(), xa.data(), n, cp);
            }
            return codes;
          },
          py::arg("x"))
      .def(
          "decode",
          [](const Index& self, const py::array& codes) {
            auto ca = strict<uint8_t>(codes, "codes", 2);
            check_dim(ca, "codes", self.code_size());
            const py::ssize_t n = ca.shape(0);
            const Codebooks& cb = self.codebooks();
            if (!codes_valid(ca.data(), n, cb.M, cb.nbits))
              throw py::value_error(
                  "codes: padding bits beyond M*nbits in the last byte of a row must be zero");
            py::array_t<float> x({n, static_cast<py::ssize_t>(self.dim())});
            float* xp = x.mutable_data();
            {
              py::gil_scoped_release nogil;
              decode(self.codebooks(), ca.data(), n, xp);
            }
            return x;
          },
          py::arg("codes"))
      .def(
          "remove",
          [](Index& self, const py::array& ids) {
            auto ia = strict<int64_t>(ids, "ids", 1);
            py::gil_scoped_release nogil;
            return self.remove(ia.data(), ia.shape(0));
          },
          py::arg("ids"))
      .def(
          "reconstruct",
          [](const Index& self, const py::array& ids) {
            auto ia = strict<int64_t>(ids, "ids", 1);
            const py::ssize_t n = ia.shape(0);
            py::array_t<float> x({n, static_cast<py::ssize_t>(self.dim())});
            float* xp = x.mutable_data();
            {
              py::gil_scoped_release nogil;
              self.reconstruct(ia.data(), n, xp);
            }
            return x;
          },
          py::arg("ids"))
      .def("codes",
           [](const Index& self) {
             std::vector<uint8_t> codes;
             {
               py::gil_scoped_release nogil;
               self.snapshot(&codes, nullptr);
             }
             const py::ssize_t cs = self.code_size();
             const py::ssize_t n = cs ? codes.size() / cs : 0;
             return to_numpy(std::move(codes), {n, cs});
           })
      .def("ids",
           [](const Index& self) {
             std::vector<int64_t> ids;
             {
               py::gil_scoped_release nogil;
               self.snapshot(nullptr, &ids);
             }
             const py::ssize_t n = ids.size();
             return to_numpy(std::move(ids), {n});
           })
      .def(
          "save",
          [](const Index& self, const std::string& path) {
            py::gil_scoped_release nogil;
            self.save(path);
          },
          py::arg("path"))
      .def(
          "merge_from",
          [](Index& self, const Index& other, bool shift_ids) {
            py::gil_scoped_release nogil;
            self.merge_from(other, shift_ids);
          },
          py::arg("other"), py::arg("shift_ids") = false)
      .def_static(
          "load",
          [](const std::string& path, bool mmap, bool verify) {
            py::gil_scoped_release nogil;
            return Index::load(path, mmap, verify);
          },
          py::arg("path"), py::arg("mmap") = false, py::arg("verify") = true);

  m.def(
      "verify_file",
      [](const std::string& path) {
        FileSummary s;
        {
          py::gil_scoped_release nogil;
          s = verify_file(path);
        }
        py::dict d;
        d["version"] = s.version;
        d["dim"] = s.dim;
        d["M"] = s.M;
        d["nbits"] = s.nbits;
        d["metric"] = metric_name(static_cast<Metric>(s.metric));
        d["id_mode"] = s.id_mode;
        d["ntotal"] = s.ntotal;
        d["next_id"] = s.next_id;
        d["ids_stored"] = s.ids_stored;
        return d;
      },
      py::arg("path"));
  m.def(
      "merge_files",
      [](const std::string& out, const std::vector<std::string>& inputs, bool shift_ids) {
        py::gil_scoped_release nogil;
        merge_files(out, inputs, shift_ids);
      },
      py::arg("out"), py::arg("inputs"), py::arg("shift_ids") = false);

  m.def("set_num_threads", &set_num_threads, py::arg("n"));
  // The core's value rules, for Python code that must fail before its own work (k-means, Lloyd).
  m.def(
      "check_metric", [](const std::string& name) { metric_from_string(name); }, py::arg("metric"));
  m.def(
      "check_codebooks",
      [](const py::array& codebooks) {
        auto c = strict<float>(codebooks, "codebooks", 3);
        Codebooks(static_cast<int>(c.shape(0)), static_cast<int>(c.shape(1)),
                  static_cast<int>(c.shape(2)), c.data());
      },
      py::arg("codebooks"));
  m.def("get_num_threads", &get_num_threads);
  m.def("simd_level", [] { return simd_level_name(kernels().level); });
  m.def("cpu_simd_level", [] { return simd_level_name(cpu_simd_level()); });
  m.def(
      "set_simd_level",
      [](const std::string& name) { set_simd_level(simd_level_from_name(name.c_str())); },
      py::arg("level"));
  m.def(
      "xxh64",
      [](py::bytes data) {
        std::string s = data;
        return xxh64(s.data(), s.size());
      },
      py::arg("data"));
  m.def("cuda_available", [] {
#ifdef SPQINDEX_WITH_CUDA
    return cuda::device_count() > 0;  // built with CUDA and a device is usable now
#else
    return false;
#endif
  });
  m.def("cuda_built", [] {
#ifdef SPQINDEX_WITH_CUDA
    return true;
#else
    return false;
#endif
  });
#ifdef SPQINDEX_WITH_CUDA
  bind_cuda(m);
#endif
}
