#!/usr/bin/env python3
"""PyTorch baseline for bench_cuda_train: the same model (LLaDA shape of the default model:
384 wide, 6 layers, 6 heads of 64, FFN 1024, vocabulary 8192, untied head), the same batch
(16 sequences of 512, half the positions scored with weight 1) and the same loss
(sum of weighted cross-entropy over the scored rows, head applied to those rows only),
forward + backward, gradients left on the GPU.

    python3 tools/torch_train_bench.py tf32 bf16 compile compile+adamw

tf32: f32 weights and activations, TF32 matrix products (CudaTrainEngine's TF32 mode).
bf16: autocast to bfloat16 with f32 master weights. compile: torch.compile of the bf16 model.
A "+adamw" suffix makes each timed step a whole training step: gradient-norm clipping to 1.0
and torch.optim.AdamW (fused, on the GPU), as bench_cuda_train's mode 2 does.
Prints tokens/s per mode (median of timed steps, after warm-up).
"""
import math
import statistics
import sys
import time

import torch
import torch.nn.functional as F

V, E, NL, H, D, FF = 8192, 384, 6, 6, 64, 1024
S, L = 16, 512
EPS = 1e-5


def rope_tables(device):
    inv = 10000.0 ** (-torch.arange(0, D, 2, dtype=torch.float64) / D)
    ang = torch.outer(torch.arange(L, dtype=torch.float64), inv)
    return ang.cos().float().to(device), ang.sin().float().to(device)


def rope(x, cos, sin):  # x [S, H, L, D]; pairs (2i, 2i+1), as llama.cpp's "normal" order
    x0, x1 = x[..., 0::2], x[..., 1::2]
    return torch.stack((x0 * cos - x1 * sin, x0 * sin + x1 * cos), dim=-1).flatten(-2)


class Model(torch.nn.Module):
    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(1)
        def p(*shape, std=0.02, mean=0.0):
            return torch.nn.Parameter(torch.randn(*shape, generator=g) * std + mean)
        self.emb = p(V, E)
        self.out_norm = p(E, std=0.1, mean=1.0)
        self.head = p(V, E)
        self.attn_norm = torch.nn.ParameterList([p(E, std=0.1, mean=1.0) for _ in range(NL)])
        self.wqkv = torch.nn.ParameterList([p(3 * E, E) for _ in range(NL)])
        self.wo = torch.nn.ParameterList([p(E, E) for _ in range(NL)])
        self.ffn_norm = torch.nn.ParameterList([p(E, std=0.1, mean=1.0) for _ in range(NL)])
        self.wgu = torch.nn.ParameterList([p(2 * FF, E) for _ in range(NL)])
        self.wdown = torch.nn.ParameterList([p(E, FF) for _ in range(NL)])

    def forward(self, tokens, rows, targets, weights, cos, sin):
        x = self.emb[tokens]  # [S, L, E]
        for l in range(NL):
            h = F.rms_norm(x, (E,), self.attn_norm[l], EPS)
            q, k, v = (h @ self.wqkv[l].t()).view(S, L, 3, H, D).permute(2, 0, 3, 1, 4)
            o = F.scaled_dot_product_attention(rope(q, cos, sin), rope(k, cos, sin), v)
            x = x + o.transpose(1, 2).reshape(S, L, E) @ self.wo[l].t()
            h = F.rms_norm(x, (E,), self.ffn_norm[l], EPS)
            g, u = (h @ self.wgu[l].t()).chunk(2, dim=-1)
            x = x + (F.silu(g) * u) @ self.wdown[l].t()
        x = F.rms_norm(x, (E,), self.out_norm, EPS).reshape(S * L, E)[rows]
        logits = x @ self.head.t()
        ce = F.cross_entropy(logits.float(), targets, reduction="none")
        return (ce * weights).sum()


def main():
    modes = sys.argv[1:] or ["tf32", "bf16"]
    dev = torch.device("cuda")
    print(f"device: {torch.cuda.get_device_name(0)}, torch {torch.__version__}")
    gen = torch.Generator().manual_seed(2)
    tokens = torch.randint(0, V - 1, (S, L), generator=gen)
    scored = torch.rand(S * L, generator=gen) < 0.5
    targets_all = tokens.reshape(-1).clone()
    tokens = tokens.reshape(-1).masked_fill(scored, V - 1).reshape(S, L).to(dev)
    rows = scored.nonzero().squeeze(1).to(dev)
    targets = targets_all[scored].to(dev)
    weights = torch.ones(rows.numel(), device=dev)
    cos, sin = rope_tables(dev)
    for spec in modes:
        mode, _, extra = spec.partition("+")
        if mode not in ("tf32", "bf16", "compile") or extra not in ("", "adamw"):
            sys.exit(f"unknown mode {spec!r}: tf32, bf16 or compile, optionally with +adamw")
        torch.backends.cuda.matmul.allow_tf32 = mode == "tf32"
        model = Model().to(dev)
        opt = None
        if extra == "adamw":
            opt = torch.optim.AdamW(model.parameters(), lr=1e-5, betas=(0.9, 0.95),
                                    weight_decay=0.1, fused=True)
        step_fn = model
        if mode == "compile":
            step_fn = torch.compile(model)
        dtype = torch.float32 if mode == "tf32" else torch.bfloat16

        def step():
            for p in model.parameters():
                p.grad = None
            with torch.autocast("cuda", dtype=dtype, enabled=dtype != torch.float32):
                loss = step_fn(tokens, rows, targets, weights, cos, sin)
            loss.backward()
            if opt is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                opt.step()
            return loss

        for _ in range(3 if mode != "compile" else 5):
            step()
        torch.cuda.synchronize()
        times = []
        for _ in range(15):
            t0 = time.perf_counter()
            step()
            torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
        med = statistics.median(times)
        loss = step().item()
        print(f"torch {spec:14s} step {med * 1e3:7.2f} ms  {S * L / med:12,.0f} tokens/s  "
              f"(loss {loss:.1f}, mean CE {loss / rows.numel():.3f}, ln V {math.log(V):.3f})")


if __name__ == "__main__":
    main()
