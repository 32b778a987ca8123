//go:build linux

package main

import (
	"os"
	"strconv"
	"strings"
	"time"
)

// clockTick is Linux's USER_HZ, the unit of /proc/PID/stat's times: 100 on
// every architecture Go supports.
const clockTick = 10 * time.Millisecond

// cpuTime is the user and system CPU time that process pid and its live
// children (nginx's workers) have used so far; ok is false when /proc
// cannot tell.
func cpuTime(pid int) (time.Duration, bool) {
	own, _, ok := procStat(strconv.Itoa(pid))
	if !ok {
		return 0, false
	}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return own, true
	}
	for _, e := range ents {
		if e.Name()[0] < '0' || e.Name()[0] > '9' {
			continue
		}
		if t, ppid, ok := procStat(e.Name()); ok && ppid == pid {
			own += t
		}
	}
	return own, true
}

// procStat reads utime + stime and the parent's pid from /proc/PID/stat.
func procStat(pid string) (cpu time.Duration, ppid int, ok bool) {
	b, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return 0, 0, false
	}
	// The command name, in parentheses, may hold spaces: fields start
	// after the last ')'.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0, 0, false
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is the state (field 3), f[1] ppid (4), f[11] utime (14), f[12] stime (15).
	if len(f) < 13 {
		return 0, 0, false
	}
	pp, err1 := strconv.Atoi(f[1])
	u, err2 := strconv.ParseInt(f[11], 10, 64)
	s, err3 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil || err3 != nil {
		return 0, 0, false
	}
	return time.Duration(u+s) * clockTick, pp, true
}
