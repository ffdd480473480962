#!/usr/bin/env python3
"""Compares the outputs of two runs of a stage, for the device tests (test_device.sh).

  h5_compare.py h5 A.h5 B.h5 --rel R [--exact NAME]... [--skip NAME]...
      every dataset of A must be in B with the same shape; floating datasets agree within
      max|a - b| / max(max|a|, 1e-30) <= R (NaNs in the same places), other datasets (and
      the datasets whose path contains an --exact NAME) exactly; datasets whose path
      contains a --skip NAME are only checked for presence and shape (named in the output).
  h5_compare.py losses DIR_A DIR_B --rel R
      the per-step losses of DIR_A/metrics.jsonl and DIR_B/metrics.jsonl (the last line of a
      step wins): the same steps, each within relative R.
Prints one line per comparison; exit 0 when everything agrees, 1 otherwise, 77 (skip) when
h5py / numpy are missing."""
import json
import sys

try:
    import h5py
    import numpy as np
except ImportError as e:
    print(f"SKIPPED: h5_compare.py needs h5py and numpy ({e})")
    sys.exit(77)


def datasets(f):
    out = {}
    f.visititems(lambda name, obj: out.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
    return out


def cmp_h5(a, b, rel, exact, skip):
    with h5py.File(a, "r") as fa, h5py.File(b, "r") as fb:
        da, db = datasets(fa), datasets(fb)
    if not da:
        print(f"FAIL {a}: no datasets")
        return False
    ok = True
    worst = (0.0, "")
    skipped = []
    for name, x in sorted(da.items()):
        if name not in db:
            print(f"FAIL {name}: in {a}, missing in {b}")
            ok = False
            continue
        y = db[name]
        if getattr(x, "shape", ()) != getattr(y, "shape", ()):
            print(f"FAIL {name}: shape {x.shape} vs {y.shape}")
            ok = False
            continue
        if any(k in name for k in skip):
            skipped.append(name)
            continue
        if isinstance(x, np.ndarray) and x.dtype.kind == "f" and not any(e in name for e in exact):
            nan_a, nan_b = np.isnan(x), np.isnan(y)
            if not np.array_equal(nan_a, nan_b):
                print(f"FAIL {name}: NaNs in different places")
                ok = False
                continue
            xa, yb = x[~nan_a].astype(np.float64), y[~nan_b].astype(np.float64)
            if xa.size == 0:
                continue
            scale = max(float(np.max(np.abs(xa))), 1e-30)
            r = float(np.max(np.abs(xa - yb))) / scale
            if r > worst[0]:
                worst = (r, name)
            if not r <= rel:
                print(f"FAIL {name}: max |a-b| / max |a| = {r:.3g} > {rel:g}")
                ok = False
        else:
            same = np.array_equal(x, y) if isinstance(x, np.ndarray) else x == y
            if not same:
                print(f"FAIL {name}: differs (compared exactly)")
                ok = False
    if ok:
        print(f"ok   {len(da) - len(skipped)} datasets agree (worst {worst[0]:.3g} in {worst[1] or '-'}; rel {rel:g}, "
              f"exact: {', '.join(exact) or 'non-float only'})" + (f"; not compared: {', '.join(skipped)}" if skipped else ""))
    return ok


def losses(d):
    out = {}
    with open(f"{d}/metrics.jsonl") as f:
        for line in f:
            try:
                j = json.loads(line)
            except ValueError:
                continue
            if isinstance(j.get("step"), int) and isinstance(j.get("loss"), (int, float)):
                out[j["step"]] = float(j["loss"])
    return out


def cmp_losses(a, b, rel):
    la, lb = losses(a), losses(b)
    if not la or sorted(la) != sorted(lb):
        print(f"FAIL loss steps differ: {sorted(la)[:5]}... vs {sorted(lb)[:5]}...")
        return False
    worst = max(abs(la[s] - lb[s]) / max(abs(la[s]), 1e-30) for s in la)
    if not worst <= rel:
        print(f"FAIL losses: worst relative difference {worst:.3g} > {rel:g}")
        return False
    print(f"ok   {len(la)} step losses agree (worst {worst:.3g}, rel {rel:g})")
    return True


def main():
    args = sys.argv[1:]
    if len(args) < 3 or args[0] not in ("h5", "losses"):
        print(__doc__)
        return 2
    rel, exact, skip, rest = 0.0, [], [], []
    i = 3
    while i < len(args):
        if args[i] == "--rel":
            rel = float(args[i + 1])
            i += 2
        elif args[i] == "--exact":
            exact.append(args[i + 1])
            i += 2
        elif args[i] == "--skip":
            skip.append(args[i + 1])
            i += 2
        else:
            rest.append(args[i])
            i += 1
    if rest:
        print(f"unexpected arguments {rest}")
        return 2
    ok = cmp_h5(args[1], args[2], rel, exact, skip) if args[0] == "h5" else cmp_losses(args[1], args[2], rel)
    return 0 if ok else 1


sys.exit(main())
