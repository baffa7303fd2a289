"""Suite tables and benchdnn descriptors: shapes, totals against published figures, bad lines."""

from __future__ import annotations

import pytest

from convbench.bench.problems import Problem
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


def test_every_shipped_problem_round_trips_through_its_benchdnn_descriptor():
    for suite in suite_names():
        for p in load_suite(suite):
            alg = "avg_p" if p.op == "avgpool2d" else "max"
            again = parse_descriptor(p.descriptor(), alg=alg)
            assert again == Problem(**{**p.__dict__, "repeat": 1}), p.descriptor()


def test_resnet_descriptor():
    p = parse_descriptor('mb8ic64ih56oc64kh3ph1n"resnet_2a"')
    assert (p.name, p.op, p.N, p.C, p.H, p.W, p.K, p.R, p.S) == ("resnet_2a", "conv2d", 8, 64, 56, 56, 64, 3, 3)
    assert (p.stride, p.padding, p.dilation, p.groups, p.out_h) == ((1, 1), (1, 1), (1, 1), 1, 56)


def test_descriptor_details():
    p = parse_descriptor("g32ic32ih112iw100oc32kh3sh2ph1dh1")
    assert (p.groups, p.N, p.W, p.dilation, p.stride) == (32, 2, 100, (2, 2), (2, 2))  # mb defaults to 2
    assert p.name == "g32ic32ih112iw100oc32kh3sh2ph1dh1"


def test_benchdnn_batch_file(tmp_path):
    path = tmp_path / "shapes.txt"
    path.write_text('# a comment\n--dir=FWD_B\nmb1ic3ih224oc64kh7sh2ph3n"conv1"  # trailing\n\n'
                    '--alg=avg_p --mb=4\nic512ih7kh7sh7n"gap"\n--reset\nic64ih112kh3sh2ph1n"pool"\n')
    conv, gap, pool = read_benchdnn(path)
    assert (conv.name, conv.op, conv.out_h) == ("conv1", "conv2d", 112)
    assert (gap.op, gap.N, gap.out_h) == ("avgpool2d", 4, 1)
    assert (pool.op, pool.N, pool.out_h) == ("maxpool2d", 2, 56)


@pytest.mark.parametrize("line, message", [
    ("mb8ic64ih56oc64kh3zz1", r"shapes.txt:2: unknown field 'zz'"),
    ("mb8ic64ih56oc64kh3ph1oh55", r"shapes.txt:2: field 'oh' is 55 but the other fields give 56"),
    ("mb8ih56oc64kh3", r"shapes.txt:2: field 'ic' is required"),
    ("mb8ic64ih56oc64kh3 ph1", r"shapes.txt:2: cannot read ' ' at column 19"),
    ("mb8ic64ih56oc64kh3kh3", r"shapes.txt:2: field 'kh' appears twice"),
    ("mb8ic64ih5oc64kh9", r"shapes.txt:2: mb8ic64ih5oc64kh9: the kernel is larger than the padded input"),
    ("mb8ic64ih56oc64kh3sh0", r"shapes.txt:2: field 'sh' must be >= 1; got 0"),
    ("mb8ic64ih56oc64kh3g3", r"shapes.txt:2: .*groups=3 must divide C=64 and K=64"),
    ("ic64ih56kh3dh1", r"shapes.txt:2: field 'dh' does not apply to pooling"),
])
def test_bad_descriptor_lines_name_the_line_and_field(tmp_path, line, message):
    path = tmp_path / "shapes.txt"
    path.write_text(f"# header\n{line}\n")
    with pytest.raises(SuiteError, match=message):
        read_benchdnn(path)


def test_unsupported_pooling_algorithm(tmp_path):
    path = tmp_path / "pools.txt"
    path.write_text("--alg=avg_np\nic8ih8kh2\n")
    with pytest.raises(SuiteError, match=r"pools.txt:2: pooling algorithm 'avg_np' is not supported"):
        read_benchdnn(path)


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
