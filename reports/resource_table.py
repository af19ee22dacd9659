"""The resource table of `s4dconf run` (SPEC.md section 19): the operation and resource model
(`measure/resources.py`) applied to the named configs and to the shipped QAFT models, with the message densities
measured on their test data; written as JSON and Markdown."""
from __future__ import annotations

import json
from pathlib import Path

from s4dconf.fixedpoint.formats import load_fxp
from s4dconf.measure.resources import count_resources, measure_density
from s4dconf.reference.config import get_config
from s4dconf.training.datasets import DatasetNotFound, load_dataset


def write_resources(out_dir, models_dir, datasets=("sdigits",), n_samples: int = 100) -> dict:
    """`s4dconf run`'s resource step: counts for `paper` and `loihi-profile`, and for each shipped QAFT model with
    the densities measured on its first `n_samples` test sequences (dense and sigma-delta with vth = 0).
    Writes out_dir/resources.json and resources.md; returns the JSON."""
    out = {"paper": count_resources(get_config("paper"), seq_len=784),
           "loihi-profile": count_resources(get_config("loihi-profile"), seq_len=784)}
    for name in datasets:
        path = Path(models_dir) / f"{name}-qaft.npz"
        if not path.is_file():
            continue
        m = load_fxp(path)
        try:
            ds = load_dataset(name, "test")
        except DatasetNotFound:
            continue
        u = ds.inputs(slice(0, n_samples))
        out[f"{name}-qaft"] = count_resources(m.config, m.fmt, measure_density(m, u), seq_len=ds.length)
    data = {k: r.to_json() for k, r in out.items()}
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "resources.json").write_text(json.dumps(data, indent=1) + "\n")
    (out_dir / "resources.md").write_text("\n\n".join(f"## Resources: {k}\n\n{r.to_markdown()}"
                                                      for k, r in out.items()) + "\n")
    return data
