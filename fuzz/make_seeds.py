"""Writes small, valid seed inputs for every fuzz target into fuzz/corpus/<target>/.

Seeds are built here rather than copied from fixtures: libFuzzer mutates best from inputs of a
few hundred bytes that still reach the deep paths (every dtype decoded, a config that validates,
a manifest whose hashes match the scratch bundle). Usage: python fuzz/make_seeds.py [corpus_dir]
"""

import hashlib
import json
import pathlib
import struct
import sys

CORPUS = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else pathlib.Path(__file__).parent / "corpus")
TINY = pathlib.Path(__file__).resolve().parent.parent / "fixtures" / "tiny"


def put(target, name, data):
    folder = CORPUS / target
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(data if isinstance(data, bytes) else data.encode())


def gguf_string(s):
    b = s.encode()
    return struct.pack("<Q", len(b)) + b


def gguf_seed():
    """A GGUF v3 `llama` file with one small tensor per dtype cuma decodes."""
    meta = [
        ("general.architecture", 8, gguf_string("llama")),
        ("llama.block_count", 4, struct.pack("<I", 1)),
        ("llama.embedding_length", 4, struct.pack("<I", 32)),
        ("llama.feed_forward_length", 4, struct.pack("<I", 64)),
        ("llama.attention.head_count", 4, struct.pack("<I", 2)),
        ("llama.attention.head_count_kv", 4, struct.pack("<I", 1)),
        ("llama.attention.layer_norm_rms_epsilon", 6, struct.pack("<f", 1e-5)),
        ("llama.rope.freq_base", 6, struct.pack("<f", 10000.0)),
        ("llama.context_length", 4, struct.pack("<I", 64)),
        ("llama.vocab_size", 4, struct.pack("<I", 8)),
        ("tokenizer.ggml.tokens", 9, struct.pack("<IQ", 8, 2) + gguf_string("a") + gguf_string("b")),
    ]
    half_one = struct.pack("<e", 0.5)
    blocks = {
        0: struct.pack("<32f", *[i / 32 for i in range(32)]),  # F32
        1: b"".join(struct.pack("<e", i / 32) for i in range(32)),  # F16
        30: b"\x80\x3f" * 32,  # BF16 (1.0)
        8: half_one + bytes(range(32)),  # Q8_0
        2: half_one + bytes(range(16)),  # Q4_0
        3: half_one + half_one + bytes(range(16)),  # Q4_1
    }
    names = {
        0: "blk.0.attn_norm.weight",
        1: "blk.0.ffn_norm.weight",
        30: "output_norm.weight",
        8: "blk.0.attn_q.weight",
        2: "blk.0.attn_k.weight",
        3: "blk.0.ffn_up.weight",
    }
    header = b"GGUF" + struct.pack("<IQQ", 3, len(blocks), len(meta))
    for key, ty, value in meta:
        header += gguf_string(key) + struct.pack("<I", ty) + value
    data, offset = b"", 0
    for ty, raw in blocks.items():
        # Quantised tensors: 4 rows of one block, so Q (2 heads) and K (1 head) unpermute.
        dims = [32] if ty in (0, 1, 30) else [32, 4]
        raw = raw if ty in (0, 1, 30) else raw * 4
        header += gguf_string(names[ty]) + struct.pack("<I", len(dims))
        header += b"".join(struct.pack("<Q", d) for d in dims) + struct.pack("<IQ", ty, offset)
        padded = raw + bytes(-len(raw) % 32)
        data += padded
        offset += len(padded)
    header += bytes(-len(header) % 32)
    return header + data


def safetensors_seed():
    tensors = {
        "bert.embeddings.weight": ("F32", [2, 2], struct.pack("<4f", 1, 2, 3, 4)),
        "pooler.weight": ("F16", [2], struct.pack("<2e", 0.5, -0.5)),
        "b": ("BF16", [2], b"\x80\x3f\x00\x40"),
        "position_ids": ("I64", [1], struct.pack("<q", 0)),
    }
    header, data = {}, b""
    for name, (dtype, shape, raw) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + data


def bundle_seed():
    """A manifest that `Bundle::open` accepts for the scratch bundle of the bundle target."""
    sha = lambda b: hashlib.sha256(b).hexdigest()  # noqa: E731
    io = lambda name, dtype, shape: {"name": name, "dtype": dtype, "shape": shape}  # noqa: E731
    inputs = [io("input_ids", "int64", ["batch", "seq"]), io("attention_mask", "int64", ["batch", "past_seq+seq"])]
    inputs += [io("demographic", "float32", ["batch", "4"])]
    inputs += [io(f"past.0.{kv}", "float32", ["batch", "1", "past_seq", "8"]) for kv in ("key", "value")]
    outputs = [io("logits", "float32", ["batch", "seq", "16"]), io("routing_experts", "int64", ["2", "batch", "seq", "1"])]
    outputs += [io(f"present.0.{kv}", "float32", ["batch", "1", "past_seq+seq", "8"]) for kv in ("key", "value")]
    manifest = {
        "format_version": 2,
        "producer": "fuzz seed",
        "dtype": "f32",
        "opset": 17,
        "ir_version": 8,
        "backbone": {"family": "llama", "layers": 1, "hidden": 16, "heads": 2, "kv_heads": 1, "head_dim": 8,
                     "vocab": 16, "max_positions": 64, "tokenizer": "tokenizer.json",
                     "chat_template": "{{ messages[0].content }}", "end_of_turn": [2], "bos_token": None,
                     "eos_token": None},
        "encoder": {"family": "bert", "dim": 4, "pooling": "mean", "normalize": True, "max_tokens": 32,
                    "tokenizer": "tokenizer.json"},
        "adapter": {"method": "cuma", "experts": 2, "top_k": 1, "rank": 2, "alpha": 4.0, "targets": ["q_proj"],
                    "gate": "topk-softmax", "router_layout": "per-module", "routers": ["0.q_proj", "0.v_proj"],
                    "demographic_dim": 4, "merged": False},
        "profile": {"order": ["country", "age"], "in_prompt": True, "neutral_system": "",
                    "wording": {"lead_attribute": "country", "lead": "You are a person from {value}",
                                "lead_missing": "You are a person", "item": "{label}: {value}", "separator": ", ",
                                "closing": ".", "labels": {"age": "age group"}, "label_rule": "spaces"}},
        "choice": {"wording": {"option": " {letter}. {option}", "closing": " You can only choose one option.",
                               "letters": ["A", "B", "C"]}, "letter_ids": [3, 4, 5]},
        "graphs": {
            "model": {"file": "model.onnx", "inputs": inputs, "outputs": outputs},
            "encoder": {"file": "encoder.onnx",
                        "inputs": [io("input_ids", "int64", ["batch", "seq"]),
                                   io("attention_mask", "int64", ["batch", "seq"])],
                        "outputs": [io("embedding", "float32", ["batch", "4"])]},
        },
        "files": {"model.onnx": sha(b""), "encoder.onnx": sha(b""), "tokenizer.json": sha(b"{}")},
    }
    return json.dumps(manifest, indent=1)


def onnx_seed():
    """An ONNX model whose one initializer lives in an external file (needs the onnx package)."""
    try:
        import onnx
        from onnx import helper, TensorProto
    except ImportError:
        return None
    t = helper.make_tensor("w", TensorProto.FLOAT, [2], [1.0, 2.0])
    t.ClearField("float_data")
    t.data_location = TensorProto.EXTERNAL
    for k, v in (("location", "model.onnx.data"), ("offset", "0"), ("length", "8")):
        e = t.external_data.add()
        e.key, e.value = k, v
    node = helper.make_node("Identity", ["w"], ["y"])
    graph = helper.make_graph([node], "g", [], [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])], [t])
    return helper.make_model(graph).SerializeToString()


def main():
    put("gguf", "llama-all-dtypes.gguf", gguf_seed())
    put("safetensors", "mixed.safetensors", safetensors_seed())
    for family in ("llama", "qwen2", "qwen3", "bert"):
        put("config_json", f"{family}.json", (TINY / family / "config.json").read_bytes())
    put("config_json", "llama3-rope.json", json.dumps({
        "model_type": "llama", "vocab_size": 16, "hidden_size": 16, "intermediate_size": 32,
        "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 1,
        "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                         "high_freq_factor": 4.0, "original_max_position_embeddings": 64}}))
    put("bundle_manifest", "manifest.json", bundle_seed())
    onnx = onnx_seed()
    if onnx is not None:
        put("onnx_external_data", "external.onnx", onnx)
    put("jsonl_items", "items.jsonl", "\n".join([
        json.dumps({"id": "1", "respondent": "r", "question_id": "Q1", "profile": {"country": "Chile"},
                    "question": "Is family important?", "options": ["Yes", "No"], "answer": 1,
                    "scale": {"min": 1, "max": 2, "ordinal": True}, "groups": {"country": "CHL"}}),
        json.dumps({"id": "c", "profile": {"age": "25-34"},
                    "messages": [{"role": "user", "content": "hi"}], "chosen": "yo", "rejected": "no"}),
        "",
    ]))
    put("profile", "kv.txt", "country=Thailand, age=55-64, gender=Female")
    put("profile", "json.txt", json.dumps({"country": "Chile", "age": 30, "marital_status": "Married"}))
    template = json.loads((TINY / "llama" / "tokenizer_config.json").read_text())["chat_template"]
    put("chat_template", "chatml.jinja", template + "\0system:You are a person from Chile.\nuser:Hi")
    put("chat_template", "loops.jinja", "{% for m in messages %}{% if loop.first %}{{ bos_token }}{% endif %}"
        "{{ m.role | upper }}: {{ m.content | trim }}{% endfor %}{{ raise_exception('x') if not messages }}")
    print(f"seeds written under {CORPUS}")


if __name__ == "__main__":
    main()
