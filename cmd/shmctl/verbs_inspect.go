package main

// inspectionVerbs are the verbs that look at segments in place: ls,
// inspect, check and rm.
func inspectionVerbs() []verb { return nil }
