// Chain flush: one flush of the top layer answers every flush request waiting
// when it starts; its steps (the layer's flush plan) are issued one at a time.
#include "imaging/chain.h"

namespace strata {

void Chain::start_flush()
{
    while (!m_flush_plan && !m_flush_waiting.empty()) {
        // One flush answers every flush request waiting now: it covers every
        // write completed before any of them was submitted.
        m_flush_parents.assign(m_flush_waiting.begin(), m_flush_waiting.end());
        m_flush_waiting.clear();
        auto plan = m_layers.back()->begin_flush();
        if (!plan) {
            for (unsigned p : m_flush_parents) {
                fail(p, plan.error());
                complete(p);
            }
            m_flush_parents.clear();
            m_engine->notify();
            continue;
        }
        m_flush_plan = std::move(plan.value());
        m_flush_step = 0;
        issue_flush_step();
    }
}

void Chain::issue_flush_step()
{
    unsigned s = new_sub(0, SubKind::FlushStep);
    IoRequest step = m_flush_plan->steps[m_flush_step];
    step.token = s;
    m_engine->submit(step);
}

} // namespace strata
