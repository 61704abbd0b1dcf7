"""peftlab: compare parameter-efficient fine-tuning methods honestly."""

import logging

__version__ = "0.1.0"

# bitsandbytes (0.50), imported by peft when installed, tries on CPUs with AVX512-BF16 to fetch a
# kernel from the Hugging Face hub and warns "pip install kernels" when it cannot. That kernel serves
# only its bf16 repacking, which peftlab turns off (methods/qlora.py), so the warning is noise.
logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)
