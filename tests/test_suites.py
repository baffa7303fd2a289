"""Suite tables and benchdnn descriptors: shapes, totals against published figures, bad lines."""

from __future__ import annotations

import pytest

from convbench.bench.problems import Problem
from convbench.bench.runner import Plan
from convbench.bench.suites import (
    SuiteError,
    load_suite,
    parse_descriptor,
    read_benchdnn,
    read_csv,
    suite_names,
)

HEADER = "name,op,N,C,H,W,K,R,S,stride,padding,dilation,groups,repeat\n"

# torchvision's published GFLOPS (multiply-adds) for these models at 224x224 include the
# classifier's dense layers, which are not in the suites: add them back to compare.
PUBLISHED_GMACS = {"alexnet": (0.71, 9216 * 4096 + 4096 * 4096 + 4096 * 1000),
                   "vgg16": (15.47, 25088 * 4096 + 4096 * 4096 + 4096 * 1000),
                   "resnet18": (1.81, 512 * 1000),
                   "mobilenet_v2": (0.30, 1280 * 1000)}
LAYER_COUNTS = {  # (conv layers, pooling layers) of each network, counting repeats
    "lenet5": (2, 2), "alexnet": (5, 3), "vgg16": (13, 5), "resnet18": (20, 2), "mobilenet_v2": (52, 1)}


def test_the_shipped_suites():
    assert set(suite_names()) == {"seeds", "lenet5", "alexnet", "vgg16", "resnet18", "mobilenet_v2"}


@pytest.mark.parametrize("suite", sorted(PUBLISHED_GMACS))
def test_model_totals_match_published_multiply_adds(suite):
    published, dense = PUBLISHED_GMACS[suite]
    conv = sum(p.flops() // 2 * p.repeat for p in load_suite(suite) if p.op == "conv2d")
    assert (conv + dense) / 1e9 == pytest.approx(published, rel=0.01)


@pytest.mark.parametrize("suite", sorted(LAYER_COUNTS))
def test_layer_counts(suite):
    problems = load_suite(suite)
    convs = sum(p.repeat for p in problems if p.op == "conv2d")
    pools = sum(p.repeat for p in problems if p.op != "conv2d")
    assert (convs, pools) == LAYER_COUNTS[suite]
    assert all(p.N == 1 for p in problems)


def test_seed_shapes():
    seeds = {p.name: p for p in load_suite("seeds")}
    assert seeds["seed000_conv"].out_h == 28  # same padding
    conv, pool = seeds["seed002_conv"], seeds["seed002_pool"]
    assert (conv.N, conv.C, conv.H, conv.K, conv.R) == (4, 1, 28, 3, 5)
    assert (conv.K, conv.out_h) == (pool.C, pool.H)
    assert (pool.R, pool.stride, pool.out_h) == (3, (2, 2), 11)
    chain = [seeds[f"seed003_{n}"] for n in ("conv1", "pool1", "conv2", "pool2", "conv3", "pool3")]
    assert (chain[0].H, chain[0].W) == (300, 451)
    for before, after in zip(chain, chain[1:]):  # each stage feeds the next
        assert (before.K, before.out_h, before.out_w) == (after.C, after.H, after.W)


def test_batch_override():
    assert {p.N for p in load_suite("resnet18", batch=8)} == {8}


def _tight(p: Problem) -> tuple[int, int, int, int]:
    """p's padding with the bottom and right cut to what the output reads, as benchdnn derives
    them from the output size (a padded row no window reaches is the same problem)."""
    top, _, left, _ = p.sides
    ends = [(out - 1) * s + d * (k - 1) + 1 - size - near for out, s, d, k, size, near in (
        (p.out_h, p.stride[0], p.dilation[0], p.R, p.H, top), (p.out_w, p.stride[1], p.dilation[1], p.S, p.W, left))]
    return (top, max(ends[0], 0), left, max(ends[1], 0))


def test_every_shipped_problem_round_trips_through_its_benchdnn_descriptor():
    for suite in suite_names():
        for p in load_suite(suite):
            alg = "avg_p" if p.op == "avgpool2d" else "max"
            again = parse_descriptor(p.descriptor(), alg=alg)
            assert again == Problem(**{**p.__dict__, "repeat": 1, "padding": _tight(p)}), p.descriptor()
            assert (again.out_h, again.out_w, again.flops("forward")) == (p.out_h, p.out_w, p.flops("forward"))


def test_resnet_descriptor():
    p = parse_descriptor('mb8ic64ih56oc64kh3ph1n"resnet_2a"')
    assert (p.name, p.op, p.N, p.C, p.H, p.W, p.K, p.R, p.S) == ("resnet_2a", "conv2d", 8, 64, 56, 56, 64, 3, 3)
    assert (p.stride, p.padding, p.dilation, p.groups, p.out_h) == ((1, 1), (1, 1), (1, 1), 1, 56)


def test_descriptor_details():
    p = parse_descriptor("g32ic32ih112iw100oc32kh3kw3sh2sw2ph1pw1dh1dw1")
    assert (p.groups, p.N, p.W, p.dilation, p.stride) == (32, 2, 100, (2, 2), (2, 2))  # mb defaults to 2
    assert p.name == "g32ic32ih112iw100oc32kh3kw3sh2sw2ph1pw1dh1dw1"
    with pytest.raises(SuiteError, match="'kw' was not specified"):  # a width given in part takes no height fields
        parse_descriptor("g32ic32ih112iw100oc32kh3sh2ph1dh1")


def test_benchdnn_batch_file(tmp_path):
    path = tmp_path / "shapes.txt"
    path.write_text('# a comment\n--dir=FWD_B\nmb1ic3ih224oc64kh7sh2ph3n"conv1"  # trailing\n\n'
                    '--alg=avg_p --mb=4\nic512ih7kh7sh7n"gap"\n--reset\nic64ih112kh3sh2ph1n"pool"\n')
    conv, gap, pool = read_benchdnn(path).problems
    assert (conv.name, conv.op, conv.out_h, conv.directions) == ("conv1", "conv2d", 112, ("forward",))
    assert (gap.op, gap.N, gap.out_h, gap.directions) == ("avgpool2d", 4, 1, ("forward",))  # options persist
    assert (pool.op, pool.N, pool.out_h, pool.directions) == ("maxpool2d", 2, 56, ())  # until --reset


def test_options_and_a_descriptor_share_a_line(tmp_path):
    path = tmp_path / "pools.txt"
    path.write_text('--alg=max mb1ic64ih112oh56kh3sh2ph1n"pool"\n--mb=0 --alg=avg_p ic8ih8kh2n"avg"\n')
    pool, avg = read_benchdnn(path).problems
    assert (pool.name, pool.op, pool.out_h) == ("pool", "maxpool2d", 56)
    assert (avg.name, avg.op) == ("avg", "avgpool2d")


def test_dir_and_dt_choose_what_is_measured(tmp_path):
    path = tmp_path / "conv.txt"
    path.write_text('--dir=BWD_D --dt=f32\nmb1ic3ih8oc4kh3n"c1"\n--dir=FWD_D,BWD_WB --cfg=f64\nmb1ic3ih8oc4kh3n"c2"\n')
    c1, c2 = read_benchdnn(path).problems
    assert (c1.directions, c1.dtypes) == (("backward",), ("float32",))
    assert (c2.directions, c2.dtypes) == (("forward", "backward"), ("float64",))
    plan = Plan(suites=[str(path)], backends=["im2col"], dtypes=["float32", "float64"], threads=[1])
    assert sorted((k[1], k[3], k[5]) for k in plan.keys()) == [
        ("c1", "float32", "backward"), ("c2", "float64", "backward"), ("c2", "float64", "forward")]


@pytest.mark.parametrize("text, message", [
    ('--dir=BWD_X\nmb1ic3ih8oc4kh3\n', r"f.txt:1: option '--dir=BWD_X': benchdnn has no direction 'BWD_X'"),
    ("# header\nmb8ic64ih56oc64kh3zz1\n", r"f.txt:2: unrecognized pattern in 'mb8ic64ih56oc64kh3zz1' starting from 'zz1'"),
    ("# header\nmb8ih56oc64kh3\n", r"f.txt:2: 'ic' was not specified or set to 0"),
    ("# header\nmb8ic64ih5oc64kh9\n", r"f.txt:2: 'oh' was not specified and the other fields give -3"),
    ("# header\nmb8ic64ih56oc64kh3sh0\n", r"f.txt:2: 'sh' was not specified or set to 0"),
    ("# header\nmb8ic64ih56oc64kh3g3\n", r"f.txt:2: .*groups=3 must divide C=64 and K=64"),
    ("# header\nic64ih56kh3dh1\n", r"f.txt:2: ic64ih56kh3dh1: a pooling descriptor \(no 'oc'\) takes no dilation"),
])
def test_bad_batch_file_lines_name_the_line_and_field(tmp_path, text, message):
    path = tmp_path / "f.txt"
    path.write_text(text)
    with pytest.raises(SuiteError, match=message):
        read_benchdnn(path)


def test_unsupported_pooling_algorithm(tmp_path):
    path = tmp_path / "pools.txt"
    path.write_text("--alg=avg_np\nic8ih8kh2\n")
    (kind,) = read_benchdnn(path).skipped
    assert kind.startswith("problem(s) under --alg=avg_np, an algorithm convbench does not know (it takes direct, ")


@pytest.mark.parametrize("row, message", [
    ("c1,conv2d,1,3,8,8,4,3,3,1,1,1,1,x", r"my.csv:2: field 'repeat' must be an integer; got 'x'"),
    ("c1,conv3d,1,3,8,8,4,3,3,1,1,1,1,1", r"my.csv:2: field 'op' must be one of"),
    ("c1,conv2d,1,3,8,8,4,3,3,2x1x1,1,1,1,1", r"my.csv:2: field 'stride' must be an int or HxW"),
    ("c 1,conv2d,1,3,8,8,4,3,3,1,1,1,1,1", r"my.csv:2: field 'name' must be letters"),
    ("c1,conv2d,1,3,8,8,4,9,9,1,0,1,1,1", r"my.csv:2: c1: the kernel is larger"),
    ("p1,maxpool2d,1,3,8,8,4,2,2,2,0,1,1,1", r"my.csv:2: p1: a pooling problem has K == C"),
])
def test_bad_csv_rows_name_the_line_and_field(row, message):
    with pytest.raises(SuiteError, match=message):
        read_csv("my.csv", HEADER + row + "\n")


def test_csv_duplicate_names_and_missing_columns():
    row = "c1,conv2d,1,3,8,8,4,3,3,1,1,1,1,1\n"
    with pytest.raises(SuiteError, match=r"my.csv:3: field 'name': 'c1' appears twice"):
        read_csv("my.csv", HEADER + row + row)
    with pytest.raises(SuiteError, match=r"my.csv:1: the header lacks the column\(s\) repeat"):
        read_csv("my.csv", HEADER.replace(",repeat", "") + row)


def test_unknown_suite_lists_the_shipped_ones():
    with pytest.raises(SuiteError, match=r"suite 'resnet50' is neither a shipped suite \(alexnet, .*vgg16\) nor a file"):
        load_suite("resnet50")


@pytest.mark.parametrize("content, message", [
    (b"\x00\xff\xfe binary garbage", r"garbage.txt: not a text file"),
    (b"\xef\xbb\xbfname,op,N,C,H,W,K,R,S,stride,padding,dilation,groups,repeat\nc1,conv2d,1,1,8,8,2,3,3,1,0,1,1,1\n", None),
    (b"name,op,N,C,H,W,K,R,S,stride,padding,dilation,groups,repeat\n" + b"c" * 11_000_000 + b",conv2d\n",
     r"garbage.txt: not a readable CSV \(field larger than field limit"),
    (b"mb1ic1ih8oc1kh3" + b"x" * 5_000_000 + b"\n", r"garbage.txt:1: unrecognized pattern in 'mb1ic1ih8oc1kh3x"),
])
def test_a_suite_file_of_any_content_gives_one_bounded_line(tmp_path, content, message):
    path = tmp_path / "garbage.txt"
    path.write_bytes(content)
    if message is None:  # a CSV saved with a byte-order mark is still a CSV
        assert [p.name for p in load_suite(str(path))] == ["c1"]
        return
    with pytest.raises(SuiteError, match=message) as caught:
        load_suite(str(path))
    assert len(str(caught.value)) < 400
