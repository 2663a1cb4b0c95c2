"""`python -m spikingmind.experts`: the expert report (spikingmind.experts.report.main).

main is imported from its module, so that worker processes unpickle its functions by their
real name (spikingmind.experts.report, not __main__)."""

from spikingmind.experts.report import main

raise SystemExit(main())
