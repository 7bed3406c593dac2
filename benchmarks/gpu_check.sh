#!/usr/bin/env bash
# The kernel checks for a lent CUDA GPU, in one go (well under 8 minutes): the CUDA tests
# (fused Triton kernels, CUDA graphs and cuDNN routing against the reference, a study), the GPU
# benchmark at the issue's sizes plus B=64 T=100 H=512, and a profile of one fused LSTM
# step. Run from anywhere:
#     bash benchmarks/gpu_check.sh
# Everything it prints lands in $OUT (default ./gpu_check_out): env.txt, cuda_tests.txt,
# gpu_benchmark.txt, gpu_profile.txt.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-$PWD/gpu_check_out}"
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export OPTUNA_RNN_KERNEL_CACHE="${OPTUNA_RNN_KERNEL_CACHE:-/tmp/optuna-rnn-kernels}"

{
  date -u
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  python -c "import torch, triton, optuna; print('torch', torch.__version__, 'cuda', torch.version.cuda, \
'triton', triton.__version__, 'optuna', optuna.__version__, 'gpu', torch.cuda.get_device_name())"
} > "$OUT/env.txt" 2>&1
cat "$OUT/env.txt"

timeout 240 python -m pytest -q -p no:cacheprovider -rs tests/test_kernels_cuda.py tests/test_objective_cuda.py \
  > "$OUT/cuda_tests.txt" 2>&1
echo "cuda tests: exit $?"; tail -3 "$OUT/cuda_tests.txt"

timeout 200 python benchmarks/kernels.py --device cuda --sizes a,b,c --reps 20 --mutants 2 \
  > "$OUT/gpu_benchmark.txt" 2>&1
echo "gpu benchmark: exit $?"; cat "$OUT/gpu_benchmark.txt"

timeout 60 python benchmarks/profile_step.py --device cuda --cell lstm --size a > "$OUT/gpu_profile.txt" 2>&1
echo "gpu profile: exit $?"; head -3 "$OUT/gpu_profile.txt"
