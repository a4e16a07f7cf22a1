"""Check the generated Swift FFI layer without a Swift toolchain: the C header compiles, and
every function it declares is exported by the library (so the Swift module links).

usage: check_swift_ffi.py HEADER LIBRARY"""

import re
import subprocess
import sys


def main(header, library):
    # Included into an empty C file, as a Swift module map would use it.
    subprocess.run(
        ["gcc", "-D_Nonnull=", "-D_Nullable=", "-Wall", "-Werror", "-fsyntax-only",
         "-include", header, "-x", "c", "/dev/null"],
        check=True,
    )
    with open(header) as f:
        text = f.read()
    # Function declarations: a return type, then the name at the start of its parameter list.
    # Typedefs of callback types are `(*Name)(` and do not match.
    declared = set(re.findall(r"^\w[\w \t*]*?\b((?:uniffi|ffi)_\w+)\(", text, re.M))
    nm = subprocess.run(
        ["nm", "-D", "--defined-only", library], check=True, capture_output=True, text=True
    ).stdout
    exported = {line.split()[-1] for line in nm.splitlines() if line.strip()}
    missing = sorted(declared - exported)
    if not declared:
        sys.exit(f"swift: no function declarations found in {header}")
    if missing:
        sys.exit("swift: declared in the header but not exported:\n  " + "\n  ".join(missing))
    print(f"swift: header compiles; {len(declared)}/{len(declared)} declared functions exported")


if __name__ == "__main__":
    main(*sys.argv[1:])
