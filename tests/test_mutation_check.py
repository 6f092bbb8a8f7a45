"""scripts/mutation_check.py judges a mutation by the tests it names, in a copy of the repo: the
unmutated copy passes, a real defect is caught by the test meant for it, a no-op is missed."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'scripts'))
import mutation_check  # noqa: E402

PAD = next(m for m in mutation_check.MUTATIONS if 'padded by 64 more' in m[3])
TESTS = ['tests/test_loader.py::test_model_vocab_size_pads_to_the_next_multiple_of_64']


def test_a_mutation_is_caught_by_its_test_and_the_control_and_a_no_op_are_not():
    file, old, new, _ = PAD
    verdict, failed, _ = mutation_check.run_mutation(file, old, new, TESTS, timeout=300)
    assert verdict == 'caught' and failed == TESTS[0] + '[64-64]'  # 64 is already a multiple: padded to 128
    assert mutation_check.run_mutation(file, None, None, TESTS, timeout=300)[:2] == ('missed', '')
    assert mutation_check.run_mutation(file, old, old, TESTS, timeout=300)[:2] == ('missed', '')


def test_a_mutation_that_does_not_apply_is_invalid_not_caught():
    file, old, new, _ = PAD
    assert mutation_check.run_mutation(file, old + 'x', new, TESTS, timeout=300)[0].startswith('invalid')
    assert mutation_check.run_mutation(file, old, new + ' +', TESTS, timeout=300)[0].startswith('invalid')


def test_every_mutation_applies_to_the_code_as_it_is():
    """A mutation whose line was since rewritten is not checked at all (it reports 'invalid'): this
    catches it when the code changes, not at the next long run."""
    for file, old, new, what in mutation_check.MUTATIONS:
        with open(os.path.join(mutation_check.ROOT, file)) as f:
            source = f.read()
        assert source.count(old) == 1, f'{file}: {what}'
        compile(source.replace(old, new), file, 'exec')
