"""HTTP plumbing shared by the features: auth and other dependencies, problem responses,
answers, middleware. Features own their endpoints; the ledger and the domain know no HTTP."""
