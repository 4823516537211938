"""Move a SpikingBERT checkpoint between machines through size-limited transfers.

pack SRC DST: writes DST/config.json and DST/part<i>.safetensors, each <= 15 MiB; the word
embeddings are stored in fp16 (split by rows), every other tensor in its own dtype.
unpack SRC DST: rebuilds an fp32 checkpoint folder loadable with ``from_pretrained``.
The fp16 word embeddings are the one loss of precision (the embedding LayerNorm follows them).
"""
import shutil
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

LIMIT = 15 * 2 ** 20


def pack(src: Path, dst: Path) -> None:
    dst.mkdir(parents=True, exist_ok=True)
    shutil.copy(src / "config.json", dst / "config.json")
    tensors = load_file(src / "model.safetensors")
    pieces = []
    for name, t in tensors.items():
        if "word_embeddings" in name:
            t = t.half()
            rows = max(1, LIMIT // (t[0].numel() * t.element_size()) - 1)
            pieces += [(f"{name}@{i}", c.contiguous()) for i, c in enumerate(torch.split(t, rows))]
        else:
            pieces.append((name, t))
    part, size, n = {}, 0, 0
    for name, t in pieces:
        nbytes = t.numel() * t.element_size()
        if part and size + nbytes > LIMIT:
            save_file(part, dst / f"part{n}.safetensors")
            part, size, n = {}, 0, n + 1
        part[name], size = t, size + nbytes
    save_file(part, dst / f"part{n}.safetensors")


def unpack(src: Path, dst: Path) -> None:
    dst.mkdir(parents=True, exist_ok=True)
    shutil.copy(src / "config.json", dst / "config.json")
    merged, chunks = {}, {}
    for f in sorted(src.glob("part*.safetensors")):
        for name, t in load_file(f).items():
            if "@" in name:
                base, i = name.split("@")
                chunks.setdefault(base, {})[int(i)] = t
            else:
                merged[name] = t
    for base, parts in chunks.items():
        merged[base] = torch.cat([parts[i] for i in sorted(parts)]).float()
    save_file(merged, dst / "model.safetensors", metadata={"format": "pt"})


if __name__ == "__main__":
    {"pack": pack, "unpack": unpack}[sys.argv[1]](Path(sys.argv[2]), Path(sys.argv[3]))
