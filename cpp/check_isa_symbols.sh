#!/usr/bin/env bash
# Checks the ISA-specific object files of one or more build directories: the files compiled
# with per-file -m flags (cpp/src/{kernels,scan4,scan8}_<isa>.cpp, all but *_scalar) must define
#   no weak or unique symbols (nm W, V, u): inline or template code that the linker may share
#     with portable callers, which would then run AVX-512/NEON instructions on any CPU;
#   no data objects (nm B, b, D, d): a static initialiser would run before dispatch.
# Usage: cpp/check_isa_symbols.sh BUILD_DIR...   (NM=aarch64-linux-gnu-nm for a cross build)
set -euo pipefail
NM=${NM:-nm}
checked=0
failed=0
for dir in "$@"; do
  while IFS= read -r obj; do
    checked=$((checked + 1))
    bad=$("$NM" "$obj" | awk 'NF >= 3 && $2 ~ /^[WVuBbDd]$/ {print $2, $3}')
    if [ -n "$bad" ]; then
      failed=$((failed + 1))
      echo "FAIL $obj defines symbols an ISA file must not:"
      echo "$bad" | c++filt | sed 's/^/    /'
    fi
  done < <(find "$dir" -name '*.cpp.o' | grep -E '/(kernels|scan4|scan8)_[a-z0-9]+\.cpp\.o$' | grep -v '_scalar\.cpp\.o$' | sort)
done
if [ "$checked" -eq 0 ]; then
  echo "check_isa_symbols: no ISA object files found under $*" >&2
  exit 1
fi
echo "check_isa_symbols: $checked ISA object files checked, $failed with forbidden symbols"
[ "$failed" -eq 0 ]
