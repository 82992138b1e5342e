"""The world's oracles checked before they are believed (issue 65): the agents' resolvers by
their canaries, a side check's own oracles by theirs (each list by its RFC 5782 test entries);
each one's health per country,
its findings for the operator, its notices and its metrics."""
