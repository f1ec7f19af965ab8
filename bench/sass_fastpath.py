#!/usr/bin/env python3
"""sass_fastpath.py: what one trip around a kernel's main loop issues, from its SASS.

Reads a disassembly (`nvdisasm -c kernel.cubin` or `cuobjdump -sass`), takes the main loop to be the
longest backward branch, and finds the cheapest path once around it that still does the loop's
steady-state work: exactly `--copies` cp.async (LDGSTS) instructions that are not predicated (the
whole-tile copies of K and V), and no predicated LDGSTS or STS (the edge and synchronous copy paths).
Prints the path's length and its instructions by opcode: the tensor-core, ldmatrix, copy and MUFU
work, and everything else, which is the overhead a kernel change should shrink.

    python3 bench/sass_fastpath.py kernel.sass --copies 8 [--listing]

--copies: K and V rows * head_dim / 8 / threads, e.g. 8 for block_n 64, d 128, 256 threads.
--allow-predicated: count predicated LDGSTS too (a generator whose copies are always predicated).
"""
import argparse
import collections
import heapq
import re
import sys

CORE = ("HMMA", "LDSM", "LDGSTS", "MUFU")
LABEL = re.compile(r"^(\.L_x_\d+):")
INSTRUCTION = re.compile(r"\s*/\*[0-9a-f]+\*/\s+(@!?U?P\w+\s+)?([A-Z0-9_]+)(\S*)\s*(.*)")
TARGET = re.compile(r"\((\.L_x_\d+)\)")


def parse(text):
    """Instructions as (opcode, predicate, operands) and the instruction index of every label."""
    instructions, labels = [], {}
    for line in text.split("\n"):
        label = LABEL.match(line)
        if label:
            labels[label.group(1)] = len(instructions)
        m = INSTRUCTION.match(line)
        if m:
            instructions.append((m.group(2), (m.group(1) or "").strip(), m.group(4)))
    return instructions, labels


def main_loop(instructions, labels):
    """(first, last) instruction of the longest backward branch's range."""
    best = None
    for i, (op, _, operands) in enumerate(instructions):
        target = TARGET.search(operands)
        if op == "BRA" and target and labels.get(target.group(1), i) < i:
            start = labels[target.group(1)]
            if best is None or i - start > best[1] - best[0]:
                best = (start, i)
    return best


def fast_path(instructions, labels, copies, allow_predicated):
    head, back = main_loop(instructions, labels)
    starts = {head} | {v for v in labels.values() if head <= v <= back}
    starts |= {i + 1 for i in range(head, back + 1) if instructions[i][0] in ("BRA", "EXIT")}
    starts = sorted(s for s in starts if s <= back)
    ends = {s: (starts[k + 1] if k + 1 < len(starts) else back + 1) for k, s in enumerate(starts)}

    def block(s):
        body = instructions[s:ends[s]]
        predicated = lambda pred, operands: bool(pred) or "!P" in operands
        wanted = sum(1 for op, p, a in body if op == "LDGSTS" and (allow_predicated or not predicated(p, a)))
        excluded = any(op == "STS" or (op == "LDGSTS" and not allow_predicated and predicated(p, a))
                       for op, p, a in body)
        successors = []
        last = body[-1] if body else None
        if last and last[0] == "BRA":
            target = labels[TARGET.search(last[2]).group(1)]
            if head <= target <= back:
                successors.append(target)
            if last[1]:
                successors.append(ends[s])
        elif last and last[0] != "EXIT":
            successors.append(ends[s])
        return ends[s] - s, wanted, excluded, successors

    # Dijkstra over (block, copies so far), cost = instructions issued.
    best = {(head, 0): 0}
    queue = [(0, head, 0, (head,))]
    while queue:
        cost, s, seen, path = heapq.heappop(queue)
        size, wanted, excluded, successors = block(s)
        if excluded:
            continue
        cost, seen = cost + size, seen + wanted
        if (ends[s] > back or head in successors) and seen == copies:
            return cost, [(b, ends[b]) for b in path]
        for t in successors:
            if t != head and t <= back and best.get((t, seen), float("inf")) > cost:
                best[(t, seen)] = cost
                heapq.heappush(queue, (cost, t, seen, path + (t,)))
    return None, None


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("sass")
    parser.add_argument("--copies", type=int, required=True)
    parser.add_argument("--allow-predicated", action="store_true")
    parser.add_argument("--listing", action="store_true", help="print the path's non-core instructions")
    args = parser.parse_args()
    instructions, labels = parse(open(args.sass).read())
    if main_loop(instructions, labels) is None:
        sys.exit(f"{args.sass}: no backward branch (is it a SASS listing?)")
    cost, path = fast_path(instructions, labels, args.copies, args.allow_predicated)
    if cost is None:
        sys.exit(f"{args.sass}: no path around the loop issues exactly {args.copies} copies")
    ops = collections.Counter()
    listing = []
    for start, end in path:
        for op, pred, operands in instructions[start:end]:
            ops[op] += 1
            if op not in CORE:
                listing.append(f"  {pred + ' ' if pred else ''}{op} {operands[:70]}")
    core = {k: ops[k] for k in CORE}
    other = sum(ops.values()) - sum(core.values())
    print(f"{args.sass}: {sum(ops.values())} instructions once around the loop; "
          + ", ".join(f"{k} {v}" for k, v in core.items()) + f"; other {other}")
    print("  other by opcode: " + ", ".join(f"{k} {v}" for k, v in ops.most_common() if k not in CORE))
    if args.listing:
        print("\n".join(listing))


if __name__ == "__main__":
    main()
