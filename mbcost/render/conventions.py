"""The counting conventions, stated in one place and shown wherever a number is."""

MACS = "MACs = multiply-accumulates of conv and linear layers (the papers' Mult-Adds); bias, BatchNorm, " \
       "activations, pooling and adds excluded"
FLOPS = "FLOPs = 2 x MACs"
ELEMENTWISE = "elementwise ops = bias adds + BatchNorm (2/elem) + activations (1/elem) + pooling + residual adds"
PARAMS = "params = unique trainable parameters incl. biases and BatchNorm affine (running stats excluded)"
BYTES = "bytes at the analysed dtype; 1 MB = 10^6 bytes; activation memory = sum of every op's output"


def for_costs() -> list[str]:
    return [MACS, FLOPS, ELEMENTWISE, PARAMS, BYTES]
