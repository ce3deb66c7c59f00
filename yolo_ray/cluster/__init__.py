"""Ray plumbing that training and evolution share: joining a cluster, planning where workers go,
each worker's view of its rank and device, run storage at a URI, and launching Ray Train runs."""
