"""Multi-step arithmetic word problems in the style of grade-school math datasets."""

from __future__ import annotations

import random
from fractions import Fraction

from .numbers import CONTAINERS, GOODS, NAMES, THINGS, Exercise, fmt, money


def _two_names(rng: random.Random) -> tuple[str, str]:
    first, second = rng.sample(NAMES, 2)
    return first, second


def boxes_given_away(rng: random.Random) -> Exercise:
    name = rng.choice(NAMES)
    _, things = rng.choice(THINGS)
    container = rng.choice(CONTAINERS)
    count, per = rng.randint(2, 9), rng.randint(4, 24)
    total = count * per
    given = rng.randint(1, total - 1)
    return Exercise(
        f"{name} has {count} {container} of {things}. Each one holds {per} {things}. "
        f"{name} gives {given} {things} to friends. How many {things} does {name} have left?",
        (f"{name} starts with {count} * {per} = {total} {things}.",
         f"After giving some away, {name} has {total} - {given} = {total - given} {things} left."),
        Fraction(total - given))


def shopping_change(rng: random.Random) -> Exercise:
    name = rng.choice(NAMES)
    (_, goods_a), (_, goods_b) = rng.sample(GOODS, 2)
    count_a, count_b = rng.randint(2, 6), rng.randint(1, 5)
    price_a, price_b = Fraction(rng.randint(2, 40), 4), Fraction(rng.randint(2, 60), 4)
    cost_a, cost_b = count_a * price_a, count_b * price_b
    total = cost_a + cost_b
    paid = next(bill for bill in (20, 50, 100, 200) if bill >= total)
    return Exercise(
        f"{name} buys {count_a} {goods_a} for ${money(price_a)} each and {count_b} {goods_b} "
        f"for ${money(price_b)} each, and pays with a ${paid} bill. How much change does {name} get?",
        (f"The {goods_a} cost {count_a} * {money(price_a)} = {money(cost_a)} dollars.",
         f"The {goods_b} cost {count_b} * {money(price_b)} = {money(cost_b)} dollars.",
         f"Together that is {money(cost_a)} + {money(cost_b)} = {money(total)} dollars.",
         f"The change is {paid} - {money(total)} = {money(paid - total)} dollars."),
        paid - total, money(paid - total))


def trip_distance(rng: random.Random) -> Exercise:
    name = rng.choice(NAMES)
    vehicle = rng.choice(("drives", "cycles", "rides a scooter", "takes a train"))
    speed_a, speed_b = rng.randint(3, 24) * 5, rng.randint(3, 24) * 5
    hours_a, hours_b = rng.randint(1, 5), rng.randint(1, 4)
    dist_a, dist_b = speed_a * hours_a, speed_b * hours_b
    return Exercise(
        f"{name} {vehicle} at {speed_a} km per hour for {hours_a} hours, then at {speed_b} km per hour "
        f"for {hours_b} more hours. How many kilometers does {name} travel in total?",
        (f"In the first part {name} covers {speed_a} * {hours_a} = {dist_a} km.",
         f"In the second part {name} covers {speed_b} * {hours_b} = {dist_b} km.",
         f"The total distance is {dist_a} + {dist_b} = {dist_a + dist_b} km."),
        Fraction(dist_a + dist_b))


def weekly_savings(rng: random.Random) -> Exercise:
    name = rng.choice(NAMES)
    start, weekly, weeks = rng.randint(0, 60), rng.randint(3, 25), rng.randint(3, 16)
    saved = weekly * weeks
    total = start + saved
    spent = rng.randint(1, total)
    good, _ = rng.choice(GOODS)
    return Exercise(
        f"{name} has ${start} and saves ${weekly} every week for {weeks} weeks. Then {name} spends "
        f"${spent} on a {good}. How much money does {name} have now?",
        (f"{name} saves {weekly} * {weeks} = {saved} dollars.",
         f"Including the starting money, that is {start} + {saved} = {total} dollars.",
         f"After shopping, {name} has {total} - {spent} = {total - spent} dollars."),
        Fraction(total - spent))


def ages_in_future(rng: random.Random) -> Exercise:
    older, younger = _two_names(rng)
    gap, young_age, years = rng.randint(2, 30), rng.randint(3, 40), rng.randint(2, 15)
    old_age = young_age + gap
    future_sum = old_age + years + young_age + years
    return Exercise(
        f"{older} is {gap} years older than {younger}. {younger} is {young_age} years old. "
        f"What will the sum of their ages be in {years} years?",
        (f"{older} is {young_age} + {gap} = {old_age} years old now.",
         f"In {years} years {older} will be {old_age} + {years} = {old_age + years}.",
         f"In {years} years {younger} will be {young_age} + {years} = {young_age + years}.",
         f"The sum is {old_age + years} + {young_age + years} = {future_sum}."),
        Fraction(future_sum))


def reading_days(rng: random.Random) -> Exercise:
    name = rng.choice(NAMES)
    per_day, done_days, more_days = rng.randint(5, 40), rng.randint(2, 10), rng.randint(2, 12)
    pages = per_day * (done_days + more_days)
    read = per_day * done_days
    return Exercise(
        f"A book has {pages} pages. {name} reads {per_day} pages every day. After {done_days} days, "
        f"how many more days does {name} need to finish the book?",
        (f"In {done_days} days {name} reads {per_day} * {done_days} = {read} pages.",
         f"There are {pages} - {read} = {pages - read} pages left.",
         f"At {per_day} pages a day that takes {pages - read} / {per_day} = {more_days} days."),
        Fraction(more_days))


def recipe_scaling(rng: random.Random) -> Exercise:
    food = rng.choice(("cookies", "pancakes", "muffins", "dumplings", "bread rolls"))
    ingredient = rng.choice(("cups of flour", "eggs", "spoons of sugar", "cups of milk", "grams of butter"))
    batch = rng.choice((4, 6, 8, 10, 12, 16, 20, 24))
    amount = rng.randint(1, 9)
    wanted = batch * rng.randint(1, 6) // rng.choice((1, 2, 4)) or batch
    per_item = Fraction(amount, batch)
    needed = per_item * wanted
    return Exercise(
        f"A recipe for {batch} {food} uses {amount} {ingredient}. How many {ingredient} are needed "
        f"for {wanted} {food}?",
        (f"One of the {food} needs {amount} / {batch} = {fmt(per_item)} {ingredient}.",
         f"For {wanted} {food} we need {fmt(per_item)} * {wanted} = {fmt(needed)} {ingredient}."),
        needed)


def fence_cost(rng: random.Random) -> Exercise:
    length, width = rng.randint(4, 40), rng.randint(3, 30)
    price = Fraction(rng.randint(4, 60), 2)
    perimeter = 2 * (length + width)
    cost = perimeter * price
    return Exercise(
        f"A rectangular garden is {length} meters long and {width} meters wide. Fencing costs "
        f"${money(price)} per meter. How much does it cost to fence the whole garden?",
        (f"The perimeter is 2 * ({length} + {width}) = {perimeter} meters.",
         f"The fence costs {perimeter} * {money(price)} = {money(cost)} dollars."),
        cost, money(cost))


def sharing_leftovers(rng: random.Random) -> Exercise:
    name = rng.choice(NAMES)
    _, things = rng.choice(THINGS)
    friends, each = rng.randint(2, 12), rng.randint(2, 15)
    left = rng.randint(0, friends - 1)
    total = friends * each + left
    steps = (f"Each friend gets ({total} - {left}) / {friends} = {each} {things}.",
             f"Check: {friends} * {each} + {left} = {total}.")
    if rng.random() < 0.5:
        kept = f" if {name} keeps the {left} that are left over" if left else ""
        question = f"How many {things} does each friend get{kept}?"
        answer = each
    else:
        question = f"How many {things} are left over?"
        steps += (f"So {total} - {friends} * {each} = {left} {things} are left over.",)
        answer = left
    return Exercise(
        f"{name} shares {total} {things} equally among {friends} friends, giving each friend as many "
        f"as possible. {question}", steps, Fraction(answer))


def discount_price(rng: random.Random) -> Exercise:
    name = rng.choice(NAMES)
    good, _ = rng.choice(GOODS)
    percent = rng.choice((5, 10, 15, 20, 25, 30, 40, 50))
    price = rng.randint(4, 80) * 5
    discount = Fraction(price * percent, 100)
    return Exercise(
        f"A {good} costs ${price}. The shop offers {percent}% off. How much does {name} pay for it?",
        (f"The discount is {price} * {percent} / 100 = {money(discount)} dollars.",
         f"{name} pays {price} - {money(discount)} = {money(price - discount)} dollars."),
        price - discount, money(price - discount))


def overtime_pay(rng: random.Random) -> Exercise:
    name = rng.choice(NAMES)
    wage, extra = rng.randint(10, 40), rng.randint(1, 12)
    regular = 40 * wage
    overtime_rate = Fraction(3, 2) * wage
    overtime = extra * overtime_rate
    return Exercise(
        f"{name} earns ${wage} an hour for the first 40 hours of a week and one and a half times that "
        f"rate for every extra hour. How much does {name} earn in a week of {40 + extra} hours?",
        (f"Regular pay is 40 * {wage} = {regular} dollars.",
         f"The overtime rate is 1.5 * {wage} = {money(overtime_rate)} dollars per hour.",
         f"There are {40 + extra} - 40 = {extra} overtime hours, paying {extra} * {money(overtime_rate)} "
         f"= {money(overtime)} dollars.",
         f"In total {name} earns {regular} + {money(overtime)} = {money(regular + overtime)} dollars."),
        regular + overtime, money(regular + overtime))


def class_groups(rng: random.Random) -> Exercise:
    denominator = rng.choice((2, 3, 4, 5))
    students = denominator * 2 * rng.randint(2, 8)
    hobby_a, hobby_b = rng.sample(("soccer", "chess", "music", "painting", "swimming", "robotics"), 2)
    first = students // denominator
    rest = students - first
    second = rest // 2
    return Exercise(
        f"A class has {students} students. 1/{denominator} of them joins the {hobby_a} club, and half of "
        f"the remaining students join the {hobby_b} club. How many students join neither club?",
        (f"The {hobby_a} club gets {students} / {denominator} = {first} students.",
         f"That leaves {students} - {first} = {rest} students.",
         f"Half of them, {rest} / 2 = {second}, join the {hobby_b} club.",
         f"So {rest} - {second} = {rest - second} students join neither club."),
        Fraction(rest - second))


def movie_minutes(rng: random.Random) -> Exercise:
    count, hours, minutes = rng.randint(2, 5), rng.randint(1, 3), rng.randint(1, 59)
    one = hours * 60 + minutes
    return Exercise(
        f"Each movie in a marathon lasts {hours} hours and {minutes} minutes. How many minutes do "
        f"{count} movies last altogether?",
        (f"One movie lasts {hours} * 60 + {minutes} = {one} minutes.",
         f"{count} movies last {count} * {one} = {count * one} minutes."),
        Fraction(count * one))


def target_average(rng: random.Random) -> Exercise:
    name = rng.choice(NAMES)
    while True:
        scores = [rng.randint(55, 100) for _ in range(4)]
        target = rng.randint(70, 95)
        needed = 5 * target - sum(scores)
        if 0 <= needed <= 100:
            break
    listed = ", ".join(map(str, scores[:-1])) + f" and {scores[-1]}"
    return Exercise(
        f"{name} scored {listed} on four tests. What score does {name} need on the fifth test "
        f"to average exactly {target}?",
        (f"The first four scores add up to {' + '.join(map(str, scores))} = {sum(scores)}.",
         f"An average of {target} over five tests needs a total of {target} * 5 = {5 * target}.",
         f"So the fifth score must be {5 * target} - {sum(scores)} = {needed}."),
        Fraction(needed))


def resale_profit(rng: random.Random) -> Exercise:
    name = rng.choice(NAMES)
    good, goods = rng.choice(GOODS)
    bought, cost = rng.randint(10, 60), rng.randint(2, 20)
    sold = rng.randint(bought // 2 + 1, bought)
    price = cost + rng.randint(2, 15)
    revenue, spent = sold * price, bought * cost
    if revenue <= spent:
        price = -(-(spent + rng.randint(1, 50)) // sold)
        revenue = sold * price
    return Exercise(
        f"{name} buys {bought} {goods} for ${cost} each and sells {sold} of them for ${price} each. "
        f"How much profit does {name} make?",
        (f"{name} spends {bought} * {cost} = {spent} dollars.",
         f"{name} takes in {sold} * {price} = {revenue} dollars.",
         f"The profit is {revenue} - {spent} = {revenue - spent} dollars."),
        Fraction(revenue - spent))


def bus_passengers(rng: random.Random) -> Exercise:
    start = on_board = rng.randint(10, 40)
    parts, steps, expression = [], [], str(start)
    for stop in ("first", "second", "third")[: rng.randint(2, 3)]:
        off = rng.randint(0, on_board)
        board = rng.randint(0, 20)
        parts.append(f"At the {stop} stop {off} people get off and {board} get on.")
        steps.append(f"After the {stop} stop there are {on_board} - {off} + {board} = "
                     f"{on_board - off + board} passengers.")
        expression += f" - {off} + {board}"
        on_board = on_board - off + board
    return Exercise(
        f"A bus leaves the station with {start} passengers. {' '.join(parts)} How many passengers are "
        "on the bus now?",
        (*steps, f"In one line: {expression} = {on_board}."), Fraction(on_board))


def tank_filling(rng: random.Random) -> Exercise:
    rate, minutes = rng.randint(2, 30), rng.randint(5, 90)
    capacity = rate * minutes
    already = rng.randint(0, minutes - 1) * rate
    remaining = capacity - already
    return Exercise(
        f"A tank holds {capacity} liters and already contains {already} liters. A pipe adds {rate} "
        "liters per minute. How many minutes until the tank is full?",
        (f"The tank still needs {capacity} - {already} = {remaining} liters.",
         f"At {rate} liters per minute this takes {remaining} / {rate} = {remaining // rate} minutes."),
        Fraction(remaining // rate))


def floor_tiles(rng: random.Random) -> Exercise:
    length, width = rng.randint(2, 12), rng.randint(2, 12)
    per_box = rng.choice((2, 4, 5, 10))
    tiles_per_m2 = rng.choice((4, 9, 16, 25))
    area = length * width
    tiles = area * tiles_per_m2
    boxes = -(-tiles // per_box)
    return Exercise(
        f"A room measures {length} m by {width} m. Covering one square meter takes {tiles_per_m2} tiles, "
        f"and tiles come in boxes of {per_box}. How many boxes are needed?",
        (f"The floor area is {length} * {width} = {area} square meters.",
         f"That needs {area} * {tiles_per_m2} = {tiles} tiles.",
         f"{tiles} / {per_box} = {fmt(Fraction(tiles, per_box))}, so {boxes - 1} full boxes are not "
         f"enough and we need {boxes - 1} + 1 = {boxes} boxes."
         if tiles % per_box else f"Exactly {tiles} / {per_box} = {boxes} boxes are needed."),
        Fraction(boxes))


WORD_PROBLEMS = (
    boxes_given_away, shopping_change, trip_distance, weekly_savings, ages_in_future, reading_days,
    recipe_scaling, fence_cost, sharing_leftovers, discount_price, overtime_pay, class_groups,
    movie_minutes, target_average, resale_profit, bus_passengers, tank_filling, floor_tiles,
)
