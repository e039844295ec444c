import os

from diffbench import case


@case(inputs={"x": 1.0})
def raises(x, xp):
    raise RuntimeError("this case is broken on purpose")


@case(inputs={"x": 1.0})
def hangs(x, xp):
    while True:
        pass


@case(inputs={"x": 1.0})
def crashes(x, xp):
    os._exit(3)


@case(inputs={"x": [1.0, 2.0]})
def wrong_output(x, xp):
    return x[0], x[1]  # two outputs in a tuple: a case returns a scalar or one array


@case(inputs={"x": 1.0})
def unknown_function(x, xp):
    return xp.erfcx(x)


@case(inputs={"x": [1.0, float("nan")]})
def nan_input(x, xp):
    return xp.sum(x)


@case(inputs={"x": "three"})
def string_input(x, xp):
    return x


@case(inputs={"x": 1.0}, name="a|b <i>name</i>")
def markdown_name(x, xp):
    return x**2
