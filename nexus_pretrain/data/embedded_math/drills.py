"""Algebra, fraction, percentage, sequence and number-sense drills with worked solutions."""

from __future__ import annotations

import math
import random
from fractions import Fraction

from .numbers import VARIABLES, Exercise, fmt, ordinal, plus, ratio_text, signed, term


def _nonzero(rng: random.Random, low: int, high: int) -> int:
    return rng.choice([n for n in range(low, high + 1) if n != 0])


def linear_equation(rng: random.Random) -> Exercise:
    var = rng.choice(VARIABLES)
    a, solution, b = rng.randint(2, 12), rng.randint(-10, 20), rng.randint(1, 50)
    if rng.random() < 0.5:
        c = a * solution + b
        equation = f"{term(a, var)} + {b} = {c}"
        isolate = f"Subtract {b} from both sides: {term(a, var)} = {c} - {b} = {c - b}."
        check = f"Check: {a} * {signed(solution)} + {b} = {c}."
    else:
        c = a * solution - b
        equation = f"{term(a, var)} - {b} = {c}"
        isolate = f"Add {b} to both sides: {term(a, var)} = {c} + {b} = {c + b}."
        check = f"Check: {a} * {signed(solution)} - {b} = {c}."
    return Exercise(
        f"Solve for {var}: {equation}.",
        (isolate, f"Divide both sides by {a}: {var} = {a * solution} / {a} = {solution}.", check),
        Fraction(solution))


def bracket_equation(rng: random.Random) -> Exercise:
    var = rng.choice(VARIABLES)
    a, solution, b = rng.randint(2, 9), rng.randint(-8, 15), rng.randint(1, 12)
    c = a * (solution + b)
    return Exercise(
        f"Solve for {var}: {a}({var} + {b}) = {c}.",
        (f"Divide both sides by {a}: {var} + {b} = {c} / {a} = {solution + b}.",
         f"Subtract {b}: {var} = {solution + b} - {b} = {solution}.",
         f"Check: {a} * ({solution} + {b}) = {c}."),
        Fraction(solution))


def variables_on_both_sides(rng: random.Random) -> Exercise:
    var = rng.choice(VARIABLES)
    c, gap, solution, b = rng.randint(1, 8), rng.randint(1, 7), rng.randint(1, 15), rng.randint(1, 30)
    a = c + gap
    d = gap * solution + b
    return Exercise(
        f"Solve for {var}: {term(a, var)} + {b} = {term(c, var)} + {d}.",
        (f"Subtract {term(c, var)} from both sides: {term(gap, var)} + {b} = {d}.",
         f"Subtract {b} from both sides: {term(gap, var)} = {d} - {b} = {d - b}.",
         f"Divide by {gap}: {var} = {d - b} / {gap} = {solution}." if gap > 1 else f"So {var} = {solution}.",
         f"Check: the left side is {a} * {solution} + {b} = {a * solution + b} and the right side is "
         f"{c} * {solution} + {d} = {c * solution + d}."),
        Fraction(solution))


def add_fractions(rng: random.Random) -> Exercise:
    b, d = rng.sample(range(2, 13), 2)
    a, c = rng.randint(1, b - 1), rng.randint(1, d - 1)
    subtract = rng.random() < 0.4 and Fraction(a, b) > Fraction(c, d)
    op, word = ("-", "difference") if subtract else ("+", "sum")
    lcd = math.lcm(b, d)
    left, right = a * lcd // b, c * lcd // d
    raw = left - right if subtract else left + right
    result = Fraction(raw, lcd)
    steps = [f"The least common denominator of {b} and {d} is {lcd}.",
             f"Rewrite the fractions: {a}/{b} = {left}/{lcd} and {c}/{d} = {right}/{lcd}.",
             f"Then {left}/{lcd} {op} {right}/{lcd} = {raw}/{lcd}."]
    if result.denominator != lcd:
        divisor = math.gcd(raw, lcd)
        steps.append(f"Simplify by dividing top and bottom by {divisor}: {raw}/{lcd} = {ratio_text(result)}."
                     if result.denominator != 1 else f"This simplifies to {raw}/{lcd} = {result}.")
    return Exercise(f"Find the {word}: {a}/{b} {op} {c}/{d}. Give the answer as a fraction in lowest terms.",
                    tuple(steps), result, ratio_text(result) if result.denominator != 1 else fmt(result))


def multiply_fractions(rng: random.Random) -> Exercise:
    a, b, c, d = rng.randint(1, 9), rng.randint(2, 10), rng.randint(1, 9), rng.randint(2, 10)
    if rng.random() < 0.5:
        product = Fraction(a * c, b * d)
        question = f"Multiply {a}/{b} by {c}/{d}."
        steps = [f"Multiply the numerators and the denominators: {a}/{b} * {c}/{d} = "
                 f"({a} * {c})/({b} * {d}) = {a * c}/{b * d}."]
        raw = (a * c, b * d)
    else:
        product = Fraction(a * d, b * c)
        question = f"Divide {a}/{b} by {c}/{d}."
        steps = [f"Dividing by a fraction means multiplying by its reciprocal: ({a}/{b}) / ({c}/{d}) = "
                 f"{a}/{b} * {d}/{c} = {a * d}/{b * c}."]
        raw = (a * d, b * c)
    if product.denominator != raw[1]:
        steps.append(f"In lowest terms, {raw[0]}/{raw[1]} = {ratio_text(product)}."
                     if product.denominator != 1 else f"This is a whole number: {raw[0]}/{raw[1]} = {product}.")
    answer = ratio_text(product) if product.denominator != 1 else fmt(product)
    return Exercise(f"{question} Write the result in lowest terms.", tuple(steps), product, answer)


def percentages(rng: random.Random) -> Exercise:
    kind = rng.randrange(3)
    if kind == 0:
        percent, whole = rng.choice((5, 10, 12, 15, 20, 25, 30, 35, 40, 45, 60, 75, 80)), rng.randint(2, 60) * 20
        part = Fraction(percent * whole, 100)
        explanation = f"{percent}% means {percent} out of 100, so compute {percent} / 100 * {whole} = {fmt(part)}."
        return Exercise(f"What is {percent}% of {whole}?", (explanation,), part)
    if kind == 1:
        whole = rng.choice((20, 25, 40, 50, 80, 200, 250, 400, 500))
        part = rng.randint(1, whole)
        percent = Fraction(part * 100, whole)
        return Exercise(f"What percent of {whole} is {part}?",
                        (f"Divide the part by the whole and multiply by 100: {part} / {whole} * 100 = {fmt(percent)}.",
                         f"So {part} is {fmt(percent)}% of {whole}."),
                        percent)
    old = rng.choice((20, 40, 50, 80, 100, 120, 150, 200, 250, 400))
    new = old + rng.choice((-1, 1)) * old * rng.choice((5, 10, 15, 20, 25, 30, 40, 50, 75)) // 100
    change = Fraction((new - old) * 100, old)
    direction = "increase" if new > old else "decrease"
    return Exercise(
        f"A price changes from ${old} to ${new}. What is the percent {direction}?",
        (f"The change is {new} - {old} = {new - old} dollars.",
         f"As a percent of the original price: {abs(new - old)} / {old} * 100 = {fmt(abs(change))}."),
        abs(change))


def arithmetic_sequence(rng: random.Random) -> Exercise:
    first, step, shown = rng.randint(-20, 30), _nonzero(rng, -9, 12), rng.randint(4, 6)
    terms = ", ".join(str(first + i * step) for i in range(shown))
    diff = f"{first + step} - {signed(first)} = {step}"
    if rng.random() < 0.5:
        n = rng.randint(shown + 2, 60)
        value = first + (n - 1) * step
        return Exercise(
            f"Find the {ordinal(n)} term of the arithmetic sequence {terms}, ...",
            (f"The common difference is {diff}.",
             f"The nth term is first term + (n - 1) * difference, so the {ordinal(n)} term is "
             f"{first} + ({n} - 1) * {signed(step)} = {first} {plus((n - 1) * step)} = {value}."),
            Fraction(value))
    n = rng.randint(shown, 30)
    last = first + (n - 1) * step
    total = n * (first + last) // 2
    return Exercise(
        f"What is the sum of the first {n} terms of the sequence {terms}, ...?",
        (f"The common difference is {diff}.",
         f"The {ordinal(n)} term is {first} + ({n} - 1) * {signed(step)} = {last}.",
         f"The sum is the number of terms times the average of the first and last terms: "
         f"{n} * ({first} {plus(last)}) / 2 = {total}."),
        Fraction(total))


def geometric_sequence(rng: random.Random) -> Exercise:
    first, ratio, shown = rng.randint(1, 9), rng.choice((2, 3, 4, 5, -2, -3)), rng.randint(3, 5)
    terms = [first * ratio**i for i in range(shown)]
    following = terms[-1] * ratio
    return Exercise(
        f"What number comes next in the geometric sequence {', '.join(map(str, terms))}, ...?",
        (f"Each term is the previous one times the common ratio {terms[1]} / {terms[0]} = {ratio}.",
         f"The next term is {terms[-1]} * {signed(ratio)} = {following}."),
        Fraction(following))


def order_of_operations(rng: random.Random) -> Exercise:
    a, b, c, d = (rng.randint(2, 15) for _ in range(4))
    forms = (
        (f"{a} + {b} * {c}", f"multiply first: {b} * {c} = {b * c}, then {a} + {b * c} = {a + b * c}", a + b * c),
        (f"({a} + {b}) * {c}", f"the brackets first: {a} + {b} = {a + b}, then {a + b} * {c} = {(a + b) * c}",
         (a + b) * c),
        (f"{a} * {b} - {c} * {d}", f"both products first: {a} * {b} = {a * b} and {c} * {d} = {c * d}, then "
         f"{a * b} - {c * d} = {a * b - c * d}", a * b - c * d),
        (f"{a * b} / {b} + {c} * {d}", f"divide and multiply first: {a * b} / {b} = {a} and {c} * {d} = {c * d}, "
         f"then {a} + {c * d} = {a + c * d}", a + c * d),
        (f"({a} + {b}) * ({c} + {d})", f"both brackets first: {a} + {b} = {a + b} and {c} + {d} = {c + d}, then "
         f"{a + b} * {c + d} = {(a + b) * (c + d)}", (a + b) * (c + d)),
    )
    expression, explanation, value = rng.choice(forms)
    return Exercise(f"Evaluate {expression}.",
                    (f"Following the order of operations, {explanation}.",
                     f"So {expression} = {value}."),
                    Fraction(value))


def linear_system(rng: random.Random) -> Exercise:
    x, y = rng.randint(-5, 20), rng.randint(-5, 20)
    total, diff = x + y, x - y
    return Exercise(
        f"Solve the system x + y = {total} and x - y = {diff}. What is x * y?",
        (f"Adding the two equations gives 2x = {total} {plus(diff)} = {2 * x}.",
         f"So x = {2 * x} / 2 = {x}.",
         f"From the first equation, y = {total} {plus(-x)} = {y}.",
         f"Check: {x} {plus(y)} = {total} and {x} {plus(-y)} = {diff}.",
         f"Therefore x * y = {x} * {signed(y)} = {x * y}."),
        Fraction(x * y))


def combine_like_terms(rng: random.Random) -> Exercise:
    var = rng.choice(VARIABLES)
    p, q, r, s = rng.randint(1, 9), rng.randint(1, 20), rng.randint(1, 9), rng.randint(1, 20)
    at = rng.randint(-5, 10)
    coefficient, constant = p + r, q - s
    simplified = f"{term(coefficient, var)} {plus(constant)}"
    value = coefficient * at + constant
    return Exercise(
        f"Simplify {term(p, var)} + {q} + {term(r, var)} - {s}, then evaluate it at {var} = {at}.",
        (f"Combine the {var} terms: {p} + {r} = {coefficient}, giving {term(coefficient, var)}.",
         f"Combine the constants: {q} - {s} = {constant}.",
         f"The simplified expression is {simplified}.",
         f"At {var} = {at}: {coefficient} * {signed(at)} {plus(constant)} = {value}."),
        Fraction(value))


def lcm_by_euclid(rng: random.Random) -> Exercise:
    g = rng.randint(2, 15)
    m, n = rng.sample(range(2, 25), 2)
    big, small = max(m, n) * g, min(m, n) * g
    steps, a, b = [], big, small
    while b:
        steps.append(f"{a} = {a // b} * {b} + {a % b}.")
        a, b = b, a % b
    gcd = a
    lcm = big * small // gcd
    return Exercise(
        f"Use the Euclidean algorithm to find the greatest common divisor of {big} and {small}, "
        "then find their least common multiple.",
        (*steps, f"The last nonzero remainder is the greatest common divisor, {gcd}.",
         f"The least common multiple is {big} * {small} / {gcd} = {lcm}."),
        Fraction(lcm))


def powers(rng: random.Random) -> Exercise:
    base_a, exp_a = rng.randint(2, 9), rng.randint(2, 4)
    base_b, exp_b = rng.randint(2, 6), rng.randint(2, 3)
    power_a, power_b = base_a**exp_a, base_b**exp_b
    return Exercise(
        f"Compute {base_a} to the power {exp_a} plus {base_b} to the power {exp_b}.",
        (f"{base_a} to the power {exp_a} is {' * '.join([str(base_a)] * exp_a)} = {power_a}.",
         f"{base_b} to the power {exp_b} is {' * '.join([str(base_b)] * exp_b)} = {power_b}.",
         f"The sum is {power_a} + {power_b} = {power_a + power_b}."),
        Fraction(power_a + power_b))


def ratio_split(rng: random.Random) -> Exercise:
    colour_a, colour_b = rng.sample(("red", "blue", "green", "yellow", "white", "black"), 2)
    share_a, share_b, unit = rng.randint(1, 9), rng.randint(1, 9), rng.randint(2, 20)
    parts = share_a + share_b
    total = parts * unit
    return Exercise(
        f"A bag holds {total} {colour_a} and {colour_b} marbles in the ratio {share_a}:{share_b}. "
        f"How many {colour_b} marbles are there?",
        (f"The ratio has {share_a} + {share_b} = {parts} parts.",
         f"Each part is {total} / {parts} = {unit} marbles.",
         f"The {colour_b} marbles make up {share_b} * {unit} = {share_b * unit} marbles."),
        Fraction(share_b * unit))


def mean_and_median(rng: random.Random) -> Exercise:
    values = sorted(rng.randint(1, 99) for _ in range(rng.choice((4, 6, 8))))
    listed = ", ".join(map(str, rng.sample(values, len(values))))
    if rng.random() < 0.5:
        mean = Fraction(sum(values), len(values))
        return Exercise(
            f"Find the mean of {listed}.",
            (f"Add the values: {' + '.join(map(str, values))} = {sum(values)}.",
             f"Divide by the count: {sum(values)} / {len(values)} = {fmt(mean)}."),
            mean)
    middle = len(values) // 2
    low, high = values[middle - 1], values[middle]
    median = Fraction(low + high, 2)
    return Exercise(
        f"Find the median of {listed}.",
        (f"Sorted, the values are {', '.join(map(str, values))}.",
         f"There is an even number of values, so the median is the average of the two middle ones: "
         f"({low} + {high}) / 2 = {fmt(median)}."),
        median)


def triangle_area(rng: random.Random) -> Exercise:
    base, height = rng.randint(2, 40), rng.randint(2, 30)
    area = Fraction(base * height, 2)
    return Exercise(
        f"A triangle has a base of {base} cm and a height of {height} cm. What is its area in square cm?",
        (f"The area of a triangle is one half of base times height: 1/2 * {base} * {height} = {fmt(area)}.",),
        area)


DRILLS = (
    linear_equation, bracket_equation, variables_on_both_sides, add_fractions, multiply_fractions,
    percentages, arithmetic_sequence, geometric_sequence, order_of_operations, linear_system,
    combine_like_terms, lcm_by_euclid, powers, ratio_split, mean_and_median, triangle_area,
)
