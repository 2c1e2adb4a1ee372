package store

import "sync"

// keyLocks are mutexes by key, made when first locked and dropped when
// the last holder or waiter lets go: requests on different keys never
// wait on each other, however many there are, and an idle key costs
// nothing.
type keyLocks struct {
	mu sync.Mutex
	m  map[string]*keyLock
}

type keyLock struct {
	sync.Mutex
	refs int // holders and waiters
}

// lock locks key and returns its unlock.
func (k *keyLocks) lock(key string) (unlock func()) {
	l := k.ref(key)
	l.Lock()
	return func() { l.Unlock(); k.unref(key, l) }
}

// tryLock locks key if nobody holds it, and returns its unlock.
func (k *keyLocks) tryLock(key string) (unlock func(), ok bool) {
	l := k.ref(key)
	if !l.TryLock() {
		k.unref(key, l)
		return nil, false
	}
	return func() { l.Unlock(); k.unref(key, l) }, true
}

func (k *keyLocks) ref(key string) *keyLock {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.m == nil {
		k.m = map[string]*keyLock{}
	}
	l := k.m[key]
	if l == nil {
		l = &keyLock{}
		k.m[key] = l
	}
	l.refs++
	return l
}

func (k *keyLocks) unref(key string, l *keyLock) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if l.refs--; l.refs == 0 {
		delete(k.m, key)
	}
}
