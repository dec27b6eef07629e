"""Named deployments: the formats a named runtime stores and runs a model in, each with its source.

A model's roofline depends on the formats its layers are stored in, and the most-quoted deployments of a
checkpoint often quantize layers the checkpoint ships in 16 bits (gpt-oss: attention and the LM head). A
deployment names those formats so that a prediction prices the model the way that runtime runs it
(``predict model --deployment NAME``), and says where each choice comes from.

1. ``formats`` are ``models.model_step`` keywords; a flag given beside ``--deployment`` overrides its part.
2. ``models`` are the configs a deployment was read for; any other model is refused (its formats were not).
3. ``measured`` holds published decode figures beside the source, per hardware key: what a bound is held
   against (a bound below a measurement means the formats or the roofs are wrong).
4. Layers the model has no format for here (norms, router, biases, attention sinks) stay in the residual
   stream's format, as every prediction keeps them.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .models import ModelConfig

_GPT_OSS = ("gpt-oss-20b", "gpt-oss-120b")
_FORUM_355639 = ("NVIDIA developer forum thread 355639 (llama.cpp experimental native MXFP4 for Blackwell): "
                 "llama-bench on a DGX Spark, build 74e05131e (7486)")


@dataclass(frozen=True)
class Deployment:
    name: str
    runtime: str
    models: tuple  # the model names it applies to (empty: every model)
    formats: dict  # model_step keywords
    source: str
    measured: dict = field(default_factory=dict)  # (model, hardware key) -> "what was measured (source)"
    note: str = ""

    def applies_to(self, cfg: ModelConfig) -> bool:
        base = cfg.name.removesuffix("(custom)")
        return not self.models or base in self.models

    def measured_for(self, cfg: ModelConfig, hardware_key: str) -> str | None:
        """What others published for this very model on this hardware: a 120b's tokens/s beside a 20b's prediction
        was another model's number."""
        return self.measured.get((cfg.name, hardware_key))

    def formats_for(self, cfg: ModelConfig) -> dict:
        if not self.applies_to(cfg):
            raise ValueError(f"deployment {self.name!r} ({self.runtime}) was read for {', '.join(self.models)}, not "
                             f"{cfg.name}; deployments for it: {', '.join(names_for(cfg)) or 'none'}")
        return dict(self.formats)


DEPLOYMENTS: dict[str, Deployment] = {d.name: d for d in (
    Deployment(
        "hf", "Hugging Face checkpoint as shipped", (),
        dict(precision="bf16"),
        "each model's config.json on the Hugging Face hub (torch_dtype bfloat16; gpt-oss's quantization_config: "
        "MXFP4 experts, self_attn, router, embed_tokens and lm_head in modules_to_not_convert)",
        note="bf16 throughout, routed experts as the checkpoint stores them (gpt-oss: MXFP4, weight-only); the "
             "KV cache bf16"),
    Deployment(
        "llama.cpp", "llama.cpp, ggml-org MXFP4 GGUF", _GPT_OSS,
        dict(weight="q8_0", act="fp16", lm_head="q8_0", embedding="q8_0", kv="fp16"),
        "ggml-org/gpt-oss-{20b,120b}-GGUF mxfp4 files, by their sizes as llama-bench prints them (120b: 59.02 GiB, "
        "NVIDIA developer forum thread 355639; 20b: 11.27 GiB, jetsonhacks' DGX Spark llama.cpp benchmarks)",
        measured={("gpt-oss-120b", "gb10"): f"gpt-oss-120b tg32 59.05 tokens/s at depth 0 ({_FORUM_355639})"},
        note="experts MXFP4 as the checkpoint's; every other weight Q8_0, which the sizes show (MXFP4 experts with "
             "an 8.5-bit rest make 58.9 GiB for the 120b and 11.2 for the 20b, a bf16 rest 60.7 and 12.8); KV cache "
             "f16, llama.cpp's default; Q8_0 priced weight-only with 16-bit activations (its int8 dot products "
             "quantize activations to Q8_1: a few KB per token)"),
    Deployment(
        "vllm-mxfp4", "vLLM with --mxfp4-layers moe,qkv,o,lm_head (DGX Spark MXFP4 build)", _GPT_OSS,
        dict(weight="mxfp4", act="bf16", lm_head="mxfp4", expert_weight="mxfp4", expert_act="mxfp8",
             kv="fp8_e4m3"),
        "christopherowen/spark-vllm-mxfp4-docker README (vllm serve openai/gpt-oss-120b --quantization mxfp4 "
        "--mxfp4-backend CUTLASS --mxfp4-layers moe,qkv,o,lm_head --kv-cache-dtype fp8)",
        measured={("gpt-oss-120b", "gb10"): "gpt-oss-120b decode 57-60 tokens/s at TP=1 (the README's llama-benchy runs); 58.82 "
                          "(spark-arena recipe registry; 59.5 reproduced in spark-arena/recipe-registry#17); 60.7 "
                          "(eugr/spark-vllm-docker#345)"},
        note="MoE on CUTLASS FP8 x FP4 block-scaled grouped GEMMs (FP8 activations priced as MXFP8, the E8M0-scaled "
             "operand that MMA takes); QKV, O and the LM head MXFP4 on the Marlin weight-only path with bf16 "
             "activations; the embedding stays bf16; KV cache FP8"),
)}


def names_for(cfg: ModelConfig) -> list[str]:
    return [n for n, d in DEPLOYMENTS.items() if d.applies_to(cfg)]


def get_deployment(name: str) -> Deployment:
    key = str(name).strip().lower()
    if key not in DEPLOYMENTS:
        raise ValueError(f"unknown deployment {name!r}; known: {', '.join(DEPLOYMENTS)}")
    return DEPLOYMENTS[key]
