"""A line-by-line transcription of benchdnn's descriptor reading, the oracle that
convbench.bench.suites.descriptor is checked against (tests/test_benchdnn.py).

Transcribed from oneDNN's tests/benchdnn: conv/conv_aux.cpp ``str2desc``, common.cpp
``sanitize_desc``, conv/conv.hpp ``desc_t::init_pad_r``. The C is followed statement by
statement (a cursor over the string, ``strncmp`` prefixes in benchdnn's order, ``strtol``, C's
division), not restructured: it is meant to be compared with the C by eye, and differs from the
code under test in everything but what it computes. Returns a dict of desc_t's fields, or None
where benchdnn returns FAIL.
"""

from __future__ import annotations

ORDER = ["g", "mb", "ic", "id", "ih", "iw", "oc", "od", "oh", "ow", "kd", "kh", "kw",
         "sd", "sh", "sw", "pd", "ph", "pw", "dd", "dh", "dw"]


def _strtol(s: str, at: int) -> tuple[int, int]:
    """(value, end) as C's strtol(s + at, &end, 10) gives them; end == at when nothing is read."""
    i = at
    while i < len(s) and s[i] in " \t\n\v\f\r":
        i += 1
    sign = 1
    if i < len(s) and s[i] in "+-":
        sign = -1 if s[i] == "-" else 1
        i += 1
    start = i
    while i < len(s) and s[i].isdigit() and s[i].isascii():
        i += 1
    if i == start:
        return 0, at
    return sign * int(s[start:i]), i


def _cdiv(a: int, b: int) -> int:
    q = abs(a) // abs(b)
    return q if (a < 0) == (b < 0) else -q


def str2desc(text: str) -> dict | None:
    d = {f: 0 for f in ORDER}
    d["g"] = -1
    d["has_groups"] = False
    d["mb"] = 2
    d["sd"] = d["sh"] = d["sw"] = 1
    d["pd"] = d["ph"] = d["pw"] = -1
    d["name"] = ""
    s = 0
    while s < len(text):
        ok = 0
        for prb in ORDER:  # CASE_N(g); CASE_N(mb); ... CASE_N(dw);
            if text.startswith(prb, s):
                ok = 1
                s += len(prb)
                value, end_s = _strtol(text, s)
                if end_s == s:
                    return None  # ERROR: No value found
                d[prb] = value
                s = end_s
                if d[prb] < 0:
                    return None  # ERROR: must be positive
        if s < len(text) and text[s] == "n":
            d["name"] = text[s + 1:]
            break
        if s < len(text) and text[s] == "_":
            s += 1
        if not ok:
            return None  # ERROR: Unrecognized pattern
    if d["g"] >= 0:
        if d["g"] <= 0:
            return None
        d["has_groups"] = True
    else:
        d["g"] = 1
    for key in ("ic", "oc", "sd", "sh", "sw"):
        if d[key] <= 0:
            return None

    def compute_out(i, k, s, p, dd):
        return _cdiv(i - ((k - 1) * (dd + 1) + 1) + 2 * p, s) + 1

    def compute_pad(o, i, k, s, dd):
        return _cdiv((o - 1) * s - i + ((k - 1) * (dd + 1) + 1), 2)

    for a in "dhw":
        no = (d["i" + a] | d["k" + a] | d["o" + a] | d["d" + a]) == 0 and d["s" + a] == 1 and d["p" + a] < 1
        if not no:
            if d["i" + a] <= 0 or d["k" + a] <= 0:
                return None
            if not d["o" + a]:
                if d["p" + a] < 0:
                    d["p" + a] = 0
                d["o" + a] = compute_out(d["i" + a], d["k" + a], d["s" + a], d["p" + a], d["d" + a])
                if d["o" + a] <= 0:
                    return None
            elif d["p" + a] < 0:
                d["p" + a] = compute_pad(d["o" + a], d["i" + a], d["k" + a], d["s" + a], d["d" + a])
    if not sanitize_desc(d):
        return None
    for a in "dhw":  # init_pad_r
        d["p" + a + "_r"] = ((d["o" + a] - 1) * d["s" + a] - d["i" + a]
                             + ((d["k" + a] - 1) * (d["d" + a] + 1) + 1) - d["p" + a])
    return d


def sanitize_desc(d: dict) -> bool:
    fields = ["o", "i", "k", "s", "p", "d"]
    defaults = [1, 1, 1, 1, 0, 0]
    ndims = 5
    no_d, no_h, no_w = d["od"] == 0, d["oh"] == 0, d["ow"] == 0
    if no_d:
        ndims -= 1
    if no_d and no_h:
        ndims -= 1
    if no_d and no_h and no_w:
        ndims -= 1
    if ndims <= 2:
        return False
    if ndims == 5:
        if no_h and no_w:
            for f in fields:
                d[f + "w"] = d[f + "h"] = d[f + "d"]
        elif not no_h and not no_w:
            pass
        else:
            return False
    elif ndims == 4 and no_w:
        for f in fields:
            d[f + "w"] = d[f + "h"]
    for f, value in zip(fields, defaults):
        if ndims < 5:
            d[f + "d"] = value
        if ndims < 4:
            d[f + "h"] = value
        if ndims < 3:
            d[f + "w"] = value
    d["ndims"] = ndims
    return True
