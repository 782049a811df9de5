/* Split virtqueues (virtio 1.2 section 2.7): descriptor table, available and used
 * rings in one page-aligned allocation. The driver keeps a free list threaded
 * through desc[].next, publishes a chain by writing the ring slot, then the index
 * (a compiler barrier suffices on x86, where stores are not reordered with older
 * stores), and polls used->idx. */
#include "io.h"
#include "runtime.h"
#include "virtio.h"
#include "virtio_transport.h"

int virtq_init(struct virtq* q, struct virtio_dev* d, uint16_t index, uint16_t max_size)
{
    uint16_t size = vtrans_queue_max(d, index);
    if (size == 0)
        return -1;
    if (size > max_size)
        size = max_size;
    /* Queue sizes need not be powers of two in 1.x split queues, but keep one:
     * the rings are indexed modulo the size. */
    while (size & (size - 1))
        size &= (uint16_t)(size - 1);
    uint64_t desc_bytes = 16ull * size;
    uint64_t avail_bytes = 6 + 2ull * size;
    uint64_t used_bytes = 6 + 8ull * size;
    uint64_t desc_pages = (desc_bytes + 4095) & ~4095ull;
    uint64_t avail_pages = (avail_bytes + 4095) & ~4095ull;
    uint8_t* mem = rt_alloc(desc_pages + avail_pages + used_bytes, 4096);
    memset(mem, 0, desc_pages + avail_pages + used_bytes);
    q->dev = d;
    q->index = index;
    q->size = size;
    q->desc = (volatile struct virtq_desc*)mem;
    q->avail = (volatile uint16_t*)(mem + desc_pages);
    q->used = (volatile uint16_t*)(mem + desc_pages + avail_pages);
    q->tokens = rt_alloc(sizeof(void*) * size, 8);
    for (uint16_t i = 0; i < size; ++i) {
        q->desc[i].next = (uint16_t)(i + 1);
        q->tokens[i] = 0;
    }
    q->free_head = 0;
    q->num_free = size;
    q->avail_idx = 0;
    q->last_used = 0;
    q->notify_addr = vtrans_queue_setup(d, index, size, (uint64_t)q->desc, (uint64_t)q->avail, (uint64_t)q->used);
    return q->notify_addr ? 0 : -1;
}

int virtq_add(struct virtq* q, const struct virtq_buf* bufs, int n, void* token)
{
    if (n <= 0 || n > q->num_free)
        return -1;
    uint16_t head = q->free_head;
    uint16_t i = head;
    for (int k = 0; k < n; ++k) {
        volatile struct virtq_desc* d = &q->desc[i];
        d->addr = bufs[k].addr;
        d->len = bufs[k].len;
        d->flags = (uint16_t)((bufs[k].device_writes ? VIRTQ_DESC_F_WRITE : 0) | (k + 1 < n ? VIRTQ_DESC_F_NEXT : 0));
        if (k + 1 < n)
            i = d->next;
    }
    q->free_head = q->desc[i].next;
    q->num_free = (uint16_t)(q->num_free - n);
    q->tokens[head] = token;
    q->avail[2 + (q->avail_idx % q->size)] = head;
    barrier();
    q->avail_idx++;
    q->avail[1] = q->avail_idx;
    return 0;
}

void virtq_kick(struct virtq* q)
{
    mb(); /* the index store must be visible before the device looks */
    vtrans_notify(q->dev, q->notify_addr, q->index);
}

void* virtq_poll(struct virtq* q, uint32_t* len)
{
    uint16_t used_idx = q->used[1];
    if (used_idx == q->last_used)
        return 0;
    barrier(); /* read the element only after seeing the index */
    const volatile struct virtq_used_elem* e =
        (const volatile struct virtq_used_elem*)(q->used + 2) + (q->last_used % q->size);
    uint32_t id = e->id;
    if (len)
        *len = e->len;
    q->last_used++;
    if (id >= q->size)
        rt_fail(40, "%s: device returned descriptor id %u (queue size %u)", q->dev->name, id, q->size);
    void* token = q->tokens[id];
    q->tokens[id] = 0;
    /* Return the chain to the free list. */
    uint16_t tail = (uint16_t)id;
    uint16_t n = 1;
    while (q->desc[tail].flags & VIRTQ_DESC_F_NEXT) {
        tail = q->desc[tail].next;
        ++n;
    }
    q->desc[tail].next = q->free_head;
    q->free_head = (uint16_t)id;
    q->num_free = (uint16_t)(q->num_free + n);
    return token;
}

int virtq_wait_used(struct virtq* q, uint64_t ms)
{
    struct rt_timeout timeout;
    rt_timeout_start(&timeout, ms);
    while (!virtq_poll(q, 0)) {
        if (rt_timeout_expired(&timeout))
            return -1;
        cpu_relax();
    }
    return 0;
}
