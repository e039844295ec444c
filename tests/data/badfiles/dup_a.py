from diffbench import case


@case(inputs={"x": 1.0})
def twin(x, xp):
    return x
