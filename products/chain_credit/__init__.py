"""Chain credit (链式授信): the bank's credit to a core enterprise flowing down its supply chain
as digital payables certificates (电子债权凭证) that suppliers split, pass on, finance at the
bank, or hold to maturity; plus receivables factoring, order financing and risk controls.

Layout: `models` (tables), `states` (the transition tables), `errors`, `schemas`, `views`
(public representations), `repository` (tenant-scoped queries and row locks), `pricing`
(interest and discount rules), `service` (the rules), `ledger` (the adapter to the accounts
port), `jobs` (maturity, quote and facility expiry, repayments), `router` (HTTP), `cli`,
`seed` (sandbox data).
"""
