"""Roofline theory for ML kernels: formats, hardware, operator math, predictions, recommendations.

Pure Python (numpy at most): this package never imports torch.
"""
from .formats import FORMATS, Format, get_format, known_format_names, tensor_bytes
from .hardware import (REGISTRY, Calibration, Hardware, Spec, get_hardware, hardware_from_dict, known_hardware,
                       load_calibration, load_hardware_file, register_hardware)
from .operators import Composite, OpCost, attention, elementwise, ffn, gemm, gemv, operand_formats
from .models import MODEL_CONFIGS, ModelConfig, get_model_config, model_step, step_formats, transformer_layer
from .predict import (CompositePrediction, Prediction, UnsupportedPathError, compute_path, predict,
                      roofline_time)
from .recommend import Recommendation, recommend_quantization
from .memory import MemoryPlan, memory_plan
from .plan import ModelRecommendation, recommend_model
from .sweep import sweep_attention, sweep_gemm, sweep_table
from .tiling import best_tiling, tiled_gemm_traffic
from .clocks import POWER_MODES, apply_power_mode, scale_clocks

__all__ = [n for n in dir() if not n.startswith("_")]
