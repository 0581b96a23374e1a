"""A deterministic training loop (torchvision's ResNet-18, random weights and data, fixed seed)
with strata or PyTorch's caching allocator; prints one JSON line with the losses, the step
times and the allocator's statistics.

    python3 train.py --allocator strata --steps 30          # STRATA_RESOURCE etc. configure it
    python3 train.py --allocator pytorch --steps 30

Run each allocator in its own process: PyTorch's allocator is chosen once per process.
"""

import argparse
import json
import os
import statistics as stats
import sys
import time

os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

import torch  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--allocator", choices=["strata", "pytorch"], required=True)
    ap.add_argument("--model", choices=["resnet18", "transformer"], default="resnet18")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5, help="steps left out of the timing")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    if args.allocator == "strata":
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        import strata_alloc

        strata_alloc.use_with_torch()

    torch.manual_seed(args.seed)
    torch.cuda.manual_seed_all(args.seed)
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    dev = torch.device("cuda", 0)

    if args.model == "resnet18":
        import torchvision

        model = torchvision.models.resnet18(weights=None, num_classes=100).to(dev)
        gen = torch.Generator(device="cpu").manual_seed(args.seed + 1)
        inputs = torch.randn(args.steps, args.batch, 3, 224, 224, generator=gen)
        labels = torch.randint(0, 100, (args.steps, args.batch), generator=gen)
    else:
        layer = torch.nn.TransformerEncoderLayer(
            d_model=512, nhead=8, dim_feedforward=2048, dropout=0.0, batch_first=True
        )
        model = torch.nn.Sequential(
            torch.nn.TransformerEncoder(layer, num_layers=6), torch.nn.Linear(512, 100)
        ).to(dev)
        gen = torch.Generator(device="cpu").manual_seed(args.seed + 1)
        inputs = torch.randn(args.steps, args.batch, 128, 512, generator=gen)
        labels = torch.randint(0, 100, (args.steps, args.batch, 128), generator=gen)

    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loss_fn = torch.nn.CrossEntropyLoss()
    losses, times = [], []
    for step in range(args.steps):
        x = inputs[step].to(dev, non_blocking=False)
        y = labels[step].to(dev)
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        out = model(x)
        if args.model == "transformer":
            out = out.reshape(-1, 100)
            y = y.reshape(-1)
        loss = loss_fn(out, y)
        loss.backward()
        opt.step()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
        losses.append(loss.item())

    timed = times[args.warmup:] or times
    result = {
        "allocator": args.allocator,
        "resource": os.environ.get("STRATA_RESOURCE", "stream-pool")
        if args.allocator == "strata"
        else "caching",
        "model": args.model,
        "batch": args.batch,
        "steps": args.steps,
        "losses": losses,
        "step_ms_median": 1e3 * stats.median(timed),
        "step_ms_mean": 1e3 * stats.fmean(timed),
        "first_step_ms": 1e3 * times[0],
        "device": torch.cuda.get_device_name(0),
        "torch": torch.__version__,
    }
    if args.allocator == "strata":
        import strata_alloc

        result["strata"] = strata_alloc.statistics(0)
    else:
        result["pytorch"] = {
            "max_memory_allocated": torch.cuda.max_memory_allocated(0),
            "max_memory_reserved": torch.cuda.max_memory_reserved(0),
            "num_alloc_retries": torch.cuda.memory_stats(0).get("num_alloc_retries", 0),
            "allocation_count": torch.cuda.memory_stats(0).get("allocation.all.allocated", 0),
        }
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
