/* SPDX-License-Identifier: MIT */
#include <pthread.h>
#include <stdbool.h>

#include "memory/rcu.h"
#include "util/compiler.h"

#ifdef VMM_RCU_TSAN
char vmm_rcu_tsan_token;
#endif

static pthread_key_t rcu_key;
static pthread_once_t rcu_once = PTHREAD_ONCE_INIT;
static __thread bool rcu_registered;

static void rcu_thread_exit(void *arg)
{
    (void)arg;
    if (rcu_registered) {
        urcu_memb_unregister_thread();
        rcu_registered = false;
    }
}

static void rcu_key_init(void)
{
    (void)pthread_key_create(&rcu_key, rcu_thread_exit);
}

void vmm_rcu_register_thread(void)
{
    if (vmm_likely(rcu_registered)) {
        return;
    }
    pthread_once(&rcu_once, rcu_key_init);
    urcu_memb_register_thread();
    rcu_registered = true;
    /* A non-NULL value makes the key's destructor run at thread exit. */
    (void)pthread_setspecific(rcu_key, (void *)1);
}
