import gzip
import pickle  # only to write fake CIFAR batches; the library never imports it
import struct

import numpy as np
import pytest

from spqindex import datasets
from spqindex._cifar_pickle import loads


def write_idx(path, arr):
    arr = np.asarray(arr)
    code = {np.uint8: 0x08, np.int32: 0x0C}[arr.dtype.type]
    header = bytes([0, 0, code, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    body = arr.astype(arr.dtype.newbyteorder(">")).tobytes()
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "wb") as f:
        f.write(header + body)


def fake_fashion(folder, n_train=12, n_test=5, gz=True):
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    sfx = ".gz" if gz else ""
    out = {}
    for split, stem, n in (("train", "train", n_train), ("test", "t10k", n_test)):
        x = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        y = rng.integers(0, 10, n).astype(np.uint8)
        write_idx(folder / f"{stem}-images-idx3-ubyte{sfx}", x)
        write_idx(folder / f"{stem}-labels-idx1-ubyte{sfx}", y)
        out[split] = (x, y)
    return out


def test_idx_roundtrip(tmp_path):
    a = np.arange(24, dtype=np.int32).reshape(2, 3, 4) - 5
    write_idx(tmp_path / "a.idx", a)
    np.testing.assert_array_equal(datasets.read_idx(tmp_path / "a.idx"), a)
    (tmp_path / "bad").write_bytes(b"\x01\x02\x03\x04")
    with pytest.raises(ValueError, match="IDX"):
        datasets.read_idx(tmp_path / "bad")
    write_idx(tmp_path / "t.idx", np.zeros((3, 2), np.uint8))
    (tmp_path / "t.idx").write_bytes((tmp_path / "t.idx").read_bytes()[:-1])
    with pytest.raises(ValueError, match="body"):
        datasets.read_idx(tmp_path / "t.idx")


@pytest.mark.parametrize("gz", [True, False])
def test_fashion_mnist_from_root_and_env(tmp_path, monkeypatch, gz):
    want = fake_fashion(tmp_path / "fashion-mnist", gz=gz)
    x, y = datasets.fashion_mnist("test", root=tmp_path / "fashion-mnist")
    np.testing.assert_array_equal(x, want["test"][0])
    assert y.dtype == np.int64 and y.tolist() == want["test"][1].tolist()
    monkeypatch.setenv("SPQINDEX_DATA", str(tmp_path))
    x, _ = datasets.fashion_mnist("train")
    assert x.shape == (12, 28, 28)


def test_missing_dataset_says_how_to_get_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
        datasets.fashion_mnist("train", root=tmp_path)
    with pytest.raises(FileNotFoundError, match="cifar-10-python.tar.gz"):
        datasets.cifar10("train", root=tmp_path)
    with pytest.raises(ValueError, match="split"):
        datasets.fashion_mnist("val")


def fake_cifar(folder, n=4, protocol=2, bytes_keys=True):
    rng = np.random.default_rng(1)
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        labels = rng.integers(0, 10, n).tolist()
        d = {"batch_label": "fake", "labels": labels, "data": data, "filenames": [f"{i}.png" for i in range(n)]}
        if bytes_keys:  # the real files come from Python 2: byte-string keys
            d = {k.encode(): v for k, v in d.items()}
        (folder / name).write_bytes(pickle.dumps(d, protocol=protocol))
        out.append((data, labels))
    return out


@pytest.mark.parametrize("protocol,bytes_keys", [(2, True), (2, False), (4, True)])
def test_cifar10_from_batches(tmp_path, protocol, bytes_keys):
    parts = fake_cifar(tmp_path / "cifar-10-batches-py", protocol=protocol, bytes_keys=bytes_keys)
    x, y = datasets.cifar10("train", root=tmp_path)
    assert x.shape == (20, 32, 32, 3) and x.dtype == np.uint8 and y.tolist() == sum((p[1] for p in parts[:5]), [])
    # channel-first rows: first 1024 bytes are the red plane
    np.testing.assert_array_equal(x[0, :, :, 0].ravel(), parts[0][0][0, :1024])
    xt, yt = datasets.cifar10("test", root=tmp_path / "cifar-10-batches-py")
    assert xt.shape == (4, 32, 32, 3) and yt.tolist() == parts[5][1]


class _Evil:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_cifar_reader_refuses_code(tmp_path, capsys):
    with pytest.raises(ValueError, match="refusing"):
        loads(pickle.dumps({"data": _Evil()}, protocol=2))
    with pytest.raises(ValueError, match="refusing"):
        loads(pickle.dumps(np.array([object()], dtype=object), protocol=2))
    with pytest.raises(ValueError):
        loads(pickle.dumps({"a": 1}, protocol=2)[:-3])
    assert "never run" not in capsys.readouterr().out


def test_image_folder(tmp_path):
    Image = pytest.importorskip("PIL.Image")
    rng = np.random.default_rng(2)
    for cls, n in (("cat", 2), ("dog", 3)):
        (tmp_path / cls).mkdir()
        for i in range(n):
            Image.fromarray(rng.integers(0, 256, (6, 5, 3), dtype=np.uint8)).save(tmp_path / cls / f"{i}.png")
    (tmp_path / "dog" / "notes.txt").write_text("ignored")
    x, y, classes = datasets.image_folder(tmp_path)
    assert x.shape == (5, 6, 5, 3) and y.tolist() == [0, 0, 1, 1, 1] and classes == ["cat", "dog"]
    xg, _, _ = datasets.image_folder(tmp_path, size=(4, 4), grayscale=True)
    assert xg.shape == (5, 4, 4)
    Image.fromarray(np.zeros((9, 9, 3), np.uint8)).save(tmp_path / "cat" / "big.png")
    with pytest.raises(ValueError, match="size"):
        datasets.image_folder(tmp_path)


def test_arrays_multi_hot_and_load(tmp_path):
    mh = datasets.multi_hot([[0, 2], [], [1]], 3)
    assert mh.tolist() == [[1, 0, 1], [0, 0, 0], [0, 1, 0]]
    with pytest.raises(ValueError, match="outside"):
        datasets.multi_hot([[3]], 3)
    x = np.zeros((3, 8, 8), np.uint8)
    xs, ys = datasets.arrays(x, mh)
    assert ys.shape == (3, 3)
    with pytest.raises(TypeError, match="uint8"):
        datasets.arrays(x.astype(np.float32))
    with pytest.raises(ValueError, match="labels"):
        datasets.arrays(x, np.zeros(4))
    np.savez(tmp_path / "d.npz", images=x, labels=np.arange(3))
    xl, yl = datasets.load(str(tmp_path / "d.npz"))
    assert xl.shape == (3, 8, 8) and yl.tolist() == [0, 1, 2]
    with pytest.raises(ValueError, match="unknown dataset"):
        datasets.load("imagenet")
