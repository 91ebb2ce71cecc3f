"""The counting conventions, stated in one place and shown wherever a number is."""

__all__ = ["ELEMENTWISE", "FLOPS", "MACS", "PARAMS", "TRAIN", "for_costs"]

MACS = "MACs = multiply-accumulates of conv and linear layers (the papers' Mult-Adds); bias, BatchNorm, " \
       "activations, pooling and adds excluded"
FLOPS = "FLOPs = 2 x MACs"
ELEMENTWISE = "elementwise ops = bias adds + BatchNorm (2/elem) + activations (1/elem) + pooling + residual adds"
PARAMS = ("params = unique parameters, frozen ones (requires_grad=False) included, incl. biases and BatchNorm "
          "affine (buffers such as running stats excluded); trainable_params = those with requires_grad")
BYTES = "bytes at the analysed dtype; 1 MB = 10^6 bytes; activation memory = sum of every op's output"


TRAIN = ("training step (--mode train): backward MACs = a forward-sized product per operand that needs a "
         "gradient (grad input, none for the first layer; grad weight) of every conv and matmul, as torch's "
         "FlopCounterMode counts them except its grouped-conv grad weight, which ignores groups; backward "
         "elementwise = 2 x forward elementwise work (a convention); optimizer ops per trainable element: sgd 2, "
         "momentum 4, adam 12, adamw 14; memory = weights + grads + optimizer state (0, 1, 2, 2 tensors) + "
         "activations live or saved for backward at the step's worst point")


def for_costs() -> list[str]:
    return [MACS, FLOPS, ELEMENTWISE, PARAMS, BYTES]
