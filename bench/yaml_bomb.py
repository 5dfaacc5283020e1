"""How fast flotilla.core.yamlload refuses an alias bomb ("billion laughs"), and loads a real file.

    .venv/bin/python bench/yaml_bomb.py [--levels 9] [--runs 10]

A bomb of LEVELS levels, each aliasing the one before nine times, stands for 9**LEVELS nodes;
the loader must refuse it in milliseconds, with both the C and the pure-Python loader.
"""

from __future__ import annotations

import argparse
import statistics
import time

import yaml

from flotilla.core import yamlload


def bomb(levels: int, width: int = 9) -> str:
    rows = [f"a0: &a0 [{', '.join(['lol'] * width)}]"]
    rows += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * width)}]" for i in range(1, levels + 1)]
    return "\n".join(rows) + "\n"


def refuse_ms(text: str, loader: type | None) -> float:
    started = time.perf_counter()
    try:
        yamlload.load(text, loader=loader)
    except yamlload.YamlLimitError:
        return (time.perf_counter() - started) * 1000
    raise SystemExit("the bomb was not refused")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--levels", type=int, default=9)
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    text = bomb(args.levels)
    print(f"{args.levels}-level bomb ({len(text)} bytes, {9 ** args.levels:,} nodes expanded), "
          f"median of {args.runs}:")
    for name, loader in (("C loader", None), ("pure-Python loader", yaml.SafeLoader)):
        times = [refuse_ms(text, loader) for _ in range(args.runs)]
        print(f"  refused by the {name:<19} {statistics.median(times):7.2f} ms "
              f"(max {max(times):.2f} ms)")


if __name__ == "__main__":
    main()
