#!/bin/sh
# testnet.chaos.golden: the plan of a seed is the same, byte for byte, as the plan the program
# printed when these files were recorded (plans/NODES-OPS-SEED.txt, from
# `patto-testnet chaos --nodes NODES --ops OPS --seed SEED --plan`, and
# plans/consent-NODES-OPS-SEED.txt, the same with --consent-ops). A change to how plans are
# drawn changes every seed's replay: it must be deliberate, and these files recorded again.
# usage: plan_golden.sh PATTO_TESTNET PLANS_DIR
set -u
bin=$1
dir=$2
n=0
fail=0
for f in "$dir"/*.txt; do
    name=$(basename "$f" .txt)
    opt=
    case $name in
    consent-*)
        opt=" --consent-ops"
        name=${name#consent-}
        ;;
    esac
    nodes=${name%%-*}
    rest=${name#*-}
    ops=${rest%%-*}
    seed=${rest#*-}
    n=$((n + 1))
    # $opt is empty or one word: unquoted on purpose.
    if "$bin" chaos --nodes "$nodes" --ops "$ops" --seed "$seed"$opt --plan | cmp -s - "$f"; then
        echo "same plan: --nodes $nodes --ops $ops --seed $seed$opt"
    else
        echo "DIFFERENT plan: --nodes $nodes --ops $ops --seed $seed$opt (want $f)"
        fail=$((fail + 1))
    fi
done
if [ "$n" -eq 0 ]; then
    echo "no plans in $dir"
    exit 1
fi
echo "$((n - fail)) passed, $fail failed"
[ "$fail" -eq 0 ]
