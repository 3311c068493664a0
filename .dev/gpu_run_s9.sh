#!/usr/bin/env bash
# Session-9 device run (issue 6, deblurring): three continuations of the shipped data-prox
# TV-map network at once on one GPU (T in [32, 96] like the shipped stages, default T = 96),
# differing in crop, batch, learning rate and seed. Each job's weights, metrics and log are
# copied to $OUT/<job>/ when it ends, so a cut call still returns the finished ones.
# Env: OUT (required), DEVICE (default cuda), TRAIN_MIN (default 7), PY (default python3).
set -u
: "${OUT:?set OUT}"
DEVICE=${DEVICE:-cuda}; TRAIN=${TRAIN_MIN:-7}; PY=${PY:-python3}
source .dev/gpu/python_env.sh
export OMP_NUM_THREADS=2 PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null
$PY -c "import torch, deepinv, deepinv_pnn; print('torch', torch.__version__, 'deepinv', deepinv.__version__, 'cuda', torch.cuda.is_available())" || exit 1
COMMON=(-m deepinv_pnn.training.train_param_map --data-dir .dev/data/bsd400 --device "$DEVICE"
        --problem deblur --minutes "$TRAIN" --n-iter 32 --n-iter-max 96 --loss psnr --val-images 10
        --map-input adjoint+tikhonov --data-term prox --init deepinv_pnn/weights/tvmap_deblur.safetensors)
PIDS=()
job() {
  local name=$1; shift
  mkdir -p "$OUT/$name"
  ( $PY "${COMMON[@]}" "$@" --out "/tmp/$name.safetensors" > "/tmp/$name.log" 2>&1
    echo "exit $?" >> "/tmp/$name.log"
    cp /tmp/$name.safetensors* "$OUT/$name/" 2>/dev/null; cp "/tmp/$name.log" "$OUT/$name/" ) &
  PIDS+=($!)
  echo "started $name: $*"
}
job a_c96_b16 --seed 21 --crop 96 --batch 16 --lr 1.5e-4
job b_c64_b32 --seed 22 --crop 64 --batch 32 --lr 1e-4
job c_c128_b8 --seed 23 --crop 128 --batch 8 --lr 2e-4
( while sleep 60; do for f in /tmp/*_c*_b*.log; do cp "$f" "$OUT/$(basename "$f" .log)/" 2>/dev/null; done; done ) &
LOOP=$!
wait "${PIDS[@]}"
kill $LOOP 2>/dev/null
for f in /tmp/*_c*_b*.log; do echo "== $f"; tail -4 "$f"; done
