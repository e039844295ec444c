def not_a_case(x):
    return x
