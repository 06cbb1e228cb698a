"""A featherweight Hydra app for launcher tests: it records the GPU slot it was given and when
it held it, and can crash hard (os._exit, no cleanup) to show the slot is freed anyway."""

import json
import os
import time
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig


@hydra.main(version_base="1.3", config_path="slot_app_conf", config_name="app")
def main(cfg) -> int:
    start = time.time()
    time.sleep(cfg.sleep_s)
    if cfg.i == cfg.crash_on:
        os._exit(3)
    out = Path(HydraConfig.get().runtime.output_dir)
    record = {
        "i": cfg.i,
        "slot": os.environ.get("REINITLAB_GPU_SLOT"),
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "start": start,
        "end": time.time(),
    }
    (out / "slot_app.json").write_text(json.dumps(record))
    return cfg.i


if __name__ == "__main__":
    main()
