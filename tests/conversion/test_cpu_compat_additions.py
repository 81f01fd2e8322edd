"""The two CPU-layer patches this work needed (``megatron_prealign/cpu_compat.py``).

Kept beside the conversion tests that exposed them; they belong with ``tests/test_cpu_compat.py``.
Patches are process-global, so the checks run in a fresh interpreter (one, to keep them cheap).
"""

from tests.conftest import cpu_only
from tests.test_cpu_compat import run_python


@cpu_only
def test_device_context_and_tensor_cuda_patches():
    """1. transformers builds models under ``with torch.device("meta")``: without filling torch's
    factory cache first, the wrapped factories escaped the context (HF rotary buffers were left
    uninitialized). 2. ``Tensor.cuda()`` is the identity on CPU. 3. Upstream still calls
    ``.cuda()`` when it ties the embedding across pipeline stages (else drop patch 5)."""
    out = run_python("""
        import inspect, torch, warnings
        warnings.simplefilter("ignore")
        from megatron_prealign import cpu_compat
        assert cpu_compat.apply()
        with torch.device("meta"):
            print(torch.empty(2).device.type, torch.arange(3).device.type,
                  torch.nn.Linear(2, 2).weight.device.type)
        t = torch.ones(2)
        print(t.cuda() is t)
        from megatron.core.models.common.language_module.language_module import LanguageModule
        print(".cuda()" in inspect.getsource(LanguageModule.setup_embeddings_and_output_layer))
    """).split("\n")
    assert out[0].split() == ["meta", "meta", "meta"]
    assert out[1] == "True"
    assert out[2] == "True"
