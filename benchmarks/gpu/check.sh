#!/usr/bin/env bash
# The training path's GPU figures in one go, on a machine with a CUDA GPU:
#
#   bash benchmarks/gpu/check.sh DATASETS WORK OUT
#
# DATASETS holds banana_leaf/; WORK is scratch space; OUT gets the results
# (train_throughput.json, the grid's report.md and results.csv, the test log and the
# GPU's name). Steps, about 10 minutes on one H100-class GPU:
#   1. the tests that need CUDA (page-locked batches, NHWC batches on the GPU) and the
#      training tests, on the GPU;
#   2. benchmarks/train_throughput.py --device cuda: imgbalance's memory and stream
#      loops against the plain ImageFolder + DataLoader loop, small-cnn and resnet18 at
#      224 px, medians of 3;
#   3. benchmarks/gpu/resnet18_grid.yaml: 3 arms x 2 seeds of resnet18, 10 epochs.
# DEVICE=cpu SIZE=32 EPOCHS=1 runs the same steps, shortened, on a CPU, to check the
# script itself.
set -euo pipefail
data=${1:?DATASETS}; work=${2:?WORK}; out=${3:?OUT}
device=${DEVICE:-cuda}; size=${SIZE:-224}; epochs=${EPOCHS:-}
here=$(cd "$(dirname "$0")/../.." && pwd)
py=${PYTHON:-python3}
mkdir -p "$work" "$out"
"$py" - <<PY | tee "$out/gpu.txt"
import torch
print("torch", torch.__version__, "cuda", torch.version.cuda)
print("gpu", torch.cuda.get_device_name(0) if torch.cuda.is_available() else None)
PY
if [ "$device" = cuda ]; then
  "$py" -m pytest -q -p no:cacheprovider "$here/tests/torch_wing/test_gpu_layout.py" \
    "$here/tests/torch_wing/test_stream.py" 2>&1 | tee "$out/tests.txt"
fi
"$py" "$here/benchmarks/train_throughput.py" --data "$data/banana_leaf" --work "$work/tput" \
  --device "$device" --size "$size" --epochs "small-cnn=${epochs:-3},resnet18=${epochs:-2}" \
  --repeats "${REPEATS:-3}" --threads 4 --workers 4 --json "$out/train_throughput.json" \
  2>&1 | tail -40
split="$work/tput/split"  # train_throughput.py wrote it
sed -e "s/device: cuda/device: $device/" -e "s/image_size: 224/image_size: $size/" \
  -e "s/epochs: 10/epochs: ${epochs:-10}/" "$here/benchmarks/gpu/resnet18_grid.yaml" \
  > "$work/resnet18_grid.yaml"
"$py" -m imgbalance experiment "$work/resnet18_grid.yaml" --data "$split" --out "$work/grid"
cp "$work/grid/report.md" "$work/grid/results.csv" "$out/" 2>/dev/null || ls "$work/grid"
