#!/bin/sh
# The benchmarks' accounts file on stdout: 10 accounts (acct0..acct9, URLs under
# http://acctN.example/), each with a `main` profile of 8 slots and an `alt` one of 4 that
# probes http://altN.example/ instead.
echo '{"accounts": ['
for a in 0 1 2 3 4 5 6 7 8 9; do
    [ "$a" -gt 0 ] && echo ','
    echo "{\"name\":\"acct$a\",\"url_prefix\":\"http://acct$a.example/\",\"profiles\":[{\"name\":\"main\",\"max_streams\":8},{\"name\":\"alt\",\"max_streams\":4,\"replace_prefix\":\"http://alt$a.example/\"}]}"
done
echo ']}'
