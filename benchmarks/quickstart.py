"""The quick start's first extraction, as README shows it: ``medner extract --local model_repository`` on a
synthetic note (no patient data), run for real against the repository ``make demo`` exported.

    python benchmarks/quickstart.py [--repository model_repository]

Writes benchmarks/results/quickstart.md (``--out``): the command, the note, the output lines, the served
version and the date.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOTE = ("Patients with breast cancer were treated with tamoxifen and radiotherapy; asthma was controlled with "
        "salbutamol.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repository", type=Path, default=Path("model_repository"))
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "quickstart.md")
    args = parser.parse_args()

    sys.path.insert(0, str(ROOT))
    from medner.registry import champion

    command = ["medner", "extract", "--local", str(args.repository)]
    shown = f"echo '{NOTE}' | {' '.join(command)}"
    medner = Path(sys.executable).with_name("medner")
    result = subprocess.run([str(medner), *command[1:]], input=NOTE + "\n", capture_output=True, text=True,
                            cwd=ROOT, check=True)
    lines = [json.dumps(json.loads(line), ensure_ascii=False) for line in result.stdout.splitlines()]
    report = [
        "# Quick start: the first extraction",
        "",
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; the `ner` model, version "
        f"{champion(ROOT / args.repository)} of `{args.repository}` (what `make demo` exported), in-process.",
        "",
        "```console",
        f"$ {shown}",
        *lines,
        "```",
        "",
        "Command: `python benchmarks/quickstart.py`.",
    ]
    args.out.write_text("\n".join(report) + "\n")
    print("\n".join(report))


if __name__ == "__main__":
    main()
