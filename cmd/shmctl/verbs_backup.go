package main

// backupVerbs are the verbs that move segments to and from files: backup,
// restore and verify.
func backupVerbs() []verb { return nil }
