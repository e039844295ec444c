from diffbench import case


@case(inputs={"x": 3.0})
def good_quadratic(x, xp):
    return x**2 + 2 * x + 1


@case(inputs={"x": [1.0, 2.0]})
def good_sum_of_squares(x, xp):
    return xp.sum(x**2)
