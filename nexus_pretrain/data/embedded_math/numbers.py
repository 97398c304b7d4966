"""Number formatting and vocabulary shared by the math exercise templates."""

from __future__ import annotations

import random
from dataclasses import dataclass
from fractions import Fraction

NAMES = (
    "Aisha", "Ben", "Carlos", "Dana", "Elena", "Farid", "Grace", "Hiro", "Ines", "Jamal",
    "Kofi", "Lena", "Mateo", "Nadia", "Omar", "Priya", "Quinn", "Rosa", "Sam", "Tara",
    "Umar", "Vera", "Wei", "Ximena", "Yusuf", "Zoe", "Amara", "Bruno", "Chloe", "Dmitri",
    "Emeka", "Freya", "Gabriel", "Hana", "Ivan", "Julia", "Kenji", "Layla", "Marco", "Nina",
    "Olga", "Pablo", "Rahul", "Sofia", "Tomas", "Uma", "Victor", "Wanda", "Yara", "Zain",
)

# (singular, plural) nouns for countable things.
THINGS = (
    ("apple", "apples"), ("orange", "oranges"), ("pencil", "pencils"), ("marble", "marbles"),
    ("cookie", "cookies"), ("sticker", "stickers"), ("book", "books"), ("egg", "eggs"),
    ("crayon", "crayons"), ("card", "cards"), ("shell", "shells"), ("stamp", "stamps"),
    ("button", "buttons"), ("candle", "candles"), ("bead", "beads"), ("lemon", "lemons"),
    ("toy car", "toy cars"), ("muffin", "muffins"), ("seed packet", "seed packets"),
    ("tennis ball", "tennis balls"),
)

CONTAINERS = ("boxes", "bags", "crates", "packs", "jars", "baskets", "cartons", "trays")

# (singular, plural) items sold in shops.
GOODS = (
    ("notebook", "notebooks"), ("sandwich", "sandwiches"), ("pen", "pens"),
    ("T-shirt", "T-shirts"), ("coffee", "coffees"), ("plant", "plants"),
    ("ticket", "tickets"), ("loaf of bread", "loaves of bread"), ("bottle of juice", "bottles of juice"),
    ("pair of socks", "pairs of socks"), ("comic book", "comic books"), ("cupcake", "cupcakes"),
    ("bag of rice", "bags of rice"), ("flower pot", "flower pots"), ("puzzle", "puzzles"),
)

VARIABLES = ("x", "y", "n", "t", "k", "m")

HEADERS = (
    ("Problem: ", "Solution:"),
    ("Question: ", "Answer:"),
    ("Q: ", "A:"),
    ("Exercise. ", "Worked solution:"),
    ("", "Let's solve it step by step."),
    ("Math problem. ", "Reasoning:"),
)


def fmt(value: Fraction | int) -> str:
    """Exact text for a number: integer, short terminating decimal, or p/q."""
    value = Fraction(value)
    if value.denominator == 1:
        return str(value.numerator)
    for places in (1, 2, 3):
        scaled = value * 10**places
        if scaled.denominator == 1:
            sign = "-" if value < 0 else ""
            digits = str(abs(scaled.numerator)).rjust(places + 1, "0")
            return f"{sign}{digits[:-places]}.{digits[-places:]}"
    return f"{value.numerator}/{value.denominator}"


def money(value: Fraction | int) -> str:
    """Dollar amount: whole dollars without cents, otherwise exactly two decimals."""
    value = Fraction(value)
    if value.denominator == 1:
        return str(value.numerator)
    cents = value * 100
    if cents.denominator != 1:
        raise ValueError(f"{value} is not a whole number of cents")
    return f"{cents.numerator // 100}.{cents.numerator % 100:02d}"


def ratio_text(value: Fraction) -> str:
    """A fraction written as p/q even when it is a whole number or a decimal."""
    return f"{value.numerator}/{value.denominator}"


def term(coefficient: int, variable: str) -> str:
    """An algebraic term such as 3x, x or -x."""
    if coefficient == 1:
        return variable
    if coefficient == -1:
        return f"-{variable}"
    return f"{coefficient}{variable}"


def signed(value: Fraction | int) -> str:
    """A number as an operand: negative numbers are wrapped in brackets, e.g. (-3)."""
    return f"({fmt(value)})" if value < 0 else fmt(value)


def plus(value: Fraction | int) -> str:
    """The tail of a sum: '+ 3' or '- 3'."""
    return f"- {fmt(-value)}" if value < 0 else f"+ {fmt(value)}"


def ordinal(n: int) -> str:
    """1 -> 1st, 2 -> 2nd, 11 -> 11th, 23 -> 23rd."""
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


@dataclass(frozen=True)
class Exercise:
    """One exercise: the question, the solution sentences and the exact final answer."""

    question: str
    steps: tuple[str, ...]
    answer: Fraction
    answer_text: str = ""

    def render(self, rng: random.Random) -> str:
        """The exercise as a document, with a randomly chosen header style."""
        ask, solve = rng.choice(HEADERS)
        answer = self.answer_text or fmt(self.answer)
        return "\n".join((f"{ask}{self.question}", solve, *self.steps, f"The answer is {answer}."))
