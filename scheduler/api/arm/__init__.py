"""Azure Resource Manager's API for `Microsoft.Scheduler` (api-version 2016-03-01), over
the same collections and jobs as the ASM API: `azure-mgmt-scheduler` works unchanged."""
