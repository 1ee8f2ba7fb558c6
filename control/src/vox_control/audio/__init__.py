"""Audio in and out: decode any input once, encode each output format once."""
