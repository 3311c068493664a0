#!/usr/bin/env bash
# Train the two shipped ConvPNN denoisers (sigma = 25/255 and sigma = 0.01) concurrently on
# BSD400 (last 68 images held out), then pack them into $OUT/pnn/ (2 files: weights + json).
# Env: OUT (output root), DEVICE (cuda|cpu, default cuda), MINUTES (training budget per model,
# default 5), PYTHON (default python3), BATCH (default 64), PATCH (default 64), SIGMAS (default
# "25 0.01"), INIT_DIR (default deepinv_pnn/weights: when convpnn_gray_<name>.safetensors is there,
# training continues from it with a warm-up instead of starting from scratch).
set -euo pipefail
OUT=${OUT:?set OUT}; DEVICE=${DEVICE:-cuda}; MINUTES=${MINUTES:-5}; PY=${PYTHON:-python3}
BATCH=${BATCH:-64}; PATCH=${PATCH:-64}; LRS=${LRS:-0.05}; LR=${LR:-0.002}
SIGMAS=${SIGMAS:-"25 0.01"}; INIT_DIR=${INIT_DIR:-deepinv_pnn/weights}
DATA=${DATA:-.dev/data/bsd400}
mkdir -p "$OUT/pnn"
WORK=$(mktemp -d)
PIDS=()
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
for S in $SIGMAS; do
  if [ "$S" = 25 ]; then SIG=$($PY -c "print(25/255)"); NAME=sigma25; else SIG=0.01; NAME=sigma001; fi
  # fine-tuning from existing weights: smaller default learning rates
  INIT=(); L1=$LR; L2=$LRS
  if [ -f "$INIT_DIR/convpnn_gray_$NAME.safetensors" ]; then
    INIT=(--init "$INIT_DIR/convpnn_gray_$NAME.safetensors"); L1=${LR_FT:-0.001}; L2=${LRS_FT:-0.02}
  fi
  $PY -m deepinv_pnn.training.train_convpnn --data-dir "$DATA" --out "$WORK/convpnn_gray_$NAME.safetensors" \
    --device "$DEVICE" --minutes "$MINUTES" --seed 0 --sigma "$SIG" --batch-size "$BATCH" \
    --patch-size "$PATCH" --lr-stiefel "$L2" --lr "$L1" "${INIT[@]}" --checkpoint "$WORK/ckpt_$NAME.pt" --checkpoint-every 500 \
    > "$WORK/log_$NAME.txt" 2>&1 &
  PIDS+=($!)
done
STATUS=0
for PID in "${PIDS[@]}"; do wait "$PID" || STATUS=$?; done
tail -n 2 "$WORK"/log_*.txt || true
$PY - "$WORK" "$OUT/pnn" <<'PYEOF'
import json, sys
from pathlib import Path
from safetensors.torch import load_file, save_file
work, out = Path(sys.argv[1]), Path(sys.argv[2])
tensors, metrics = {}, {}
for name in ("sigma25", "sigma001"):
    w = work / f"convpnn_gray_{name}.safetensors"
    if w.is_file():
        tensors.update({f"{name}.{k}": v for k, v in load_file(str(w)).items()})
        metrics[name] = json.loads(Path(str(w) + ".json").read_text())
    log = work / f"log_{name}.txt"
    metrics.setdefault(name, {})["log_tail"] = log.read_text()[-1500:] if log.is_file() else ""
save_file(tensors, str(out / "convpnn_both.safetensors"))
(out / "convpnn.json").write_text(json.dumps(metrics, indent=1))
print(json.dumps({k: {kk: vv for kk, vv in v.items() if kk != "log_tail"} for k, v in metrics.items()}))
PYEOF
rm -rf "$WORK"
exit $STATUS
