"""PPO over whole RL² trials (Duan et al. 2016 trained with TRPO + GAE; we use PPO, Schulman et al. 2017).

A trial of n episodes is one sequence for the learner: the GRU runs over all T = n x episode_len steps with its
state carried across episode boundaries, advantages are GAE(gamma, lambda) over the whole trial (an episode's
end does not cut the return: what the agent learns in one episode pays off in the next), and every PPO
minibatch is a set of whole trials re-run from the zero state, so back-propagation goes through time over the
full trial. All randomness comes from the ``torch.Generator`` / ``np.random.Generator`` passed in.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from metactl.train.rl2_config import RL2Config
from metactl.train.rl2_envs import TrialEnv
from metactl.train.rl2_policy import RL2Policy, policy_input


@dataclasses.dataclass
class Rollout:
    """One batch of B trials of T steps: inputs [T, B, in_dim], actions [T, B(, act_dim)], log-probs, values and
    rewards [T, B]."""

    inputs: torch.Tensor
    actions: torch.Tensor
    logp: torch.Tensor
    values: torch.Tensor
    rewards: torch.Tensor

    @property
    def totals(self) -> np.ndarray:
        """Total reward per trial [B]."""
        return self.rewards.sum(0).numpy().astype(np.float64)


@torch.no_grad()
def collect(policy: RL2Policy, env: TrialEnv, episodes: int, gen: torch.Generator, greedy: bool = False) -> Rollout:
    """Run one trial of ``episodes`` episodes in each of ``env``'s tasks, stepping the GRU one step at a time with
    its state carried across episodes (zero at the trial's start)."""
    spec, b = policy.spec, env.num_trials
    steps = episodes * env.episode_len
    obs = env.reset()
    prev_a = np.zeros(b, dtype=np.int64) if spec.discrete else np.zeros((b, spec.actions))
    prev_r, prev_d = np.zeros(b), np.zeros(b)
    h = policy.initial_state(b)
    xs, acts, logps, vals, rews = [], [], [], [], []
    for _ in range(steps):
        x = torch.as_tensor(policy_input(spec, obs, prev_a, prev_r, prev_d), dtype=torch.float32)[None]
        head, value, h = policy(x, h)
        a = policy.sample(head[0], gen, greedy)
        logps.append(policy.log_prob(head, a[None])[0])
        prev_a = env.applied(a.numpy()) if hasattr(env, "applied") else a.numpy()  # what the robot really gets
        obs, prev_r, done = env.step(prev_a)
        prev_d = done.astype(np.float64)
        xs.append(x[0])
        acts.append(a)
        vals.append(value[0])
        rews.append(torch.as_tensor(prev_r, dtype=torch.float32))
    return Rollout(torch.stack(xs), torch.stack(acts), torch.stack(logps), torch.stack(vals), torch.stack(rews))


def gae(rewards: torch.Tensor, values: torch.Tensor, gamma: float, lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(advantages, returns) [T, B] by GAE (Schulman et al. 2016) over one trial that ends after step T - 1:
    delta_t = r_t + gamma V_{t+1} - V_t (V_T = 0), A_t = delta_t + gamma lambda A_{t+1}, returns = A + V."""
    adv = torch.zeros_like(rewards)
    running = torch.zeros_like(rewards[0])
    next_value = torch.zeros_like(values[0])
    for t in range(rewards.shape[0] - 1, -1, -1):
        delta = rewards[t] + gamma * next_value - values[t]
        running = delta + gamma * lam * running
        adv[t] = running
        next_value = values[t]
    return adv, adv + values


def return_scale(rewards: torch.Tensor, gamma: float) -> float:
    """Root mean square of the discounted returns-to-go of a batch's rewards [T, B] (>= 1e-3)."""
    ret, running = torch.zeros_like(rewards), torch.zeros_like(rewards[0])
    for t in range(rewards.shape[0] - 1, -1, -1):
        running = rewards[t] + gamma * running
        ret[t] = running
    return max(float(ret.pow(2).mean().sqrt()), 1e-3)


@dataclasses.dataclass(frozen=True)
class UpdateStats:
    policy_loss: float
    value_loss: float
    entropy: float
    approx_kl: float


def ppo_update(
    policy: RL2Policy,
    opt: torch.optim.Optimizer,
    batch: Rollout,
    config: RL2Config,
    gen: torch.Generator,
    entropy_coef: float,
) -> UpdateStats:
    """``config.epochs`` passes of clipped PPO over ``batch``, in minibatches of whole trials (shuffled with
    ``gen``); rewards divided by ``policy.ret_scale`` (so value targets are O(1) and the value loss does not swamp
    the shared GRU's gradient), advantages normalized per batch."""
    adv, ret = gae(batch.rewards / policy.ret_scale, batch.values, config.gamma, config.lam)
    adv = (adv - adv.mean()) / (adv.std() + 1e-8)
    b = batch.inputs.shape[1]
    stats = []
    for _ in range(config.epochs):
        for idx in torch.randperm(b, generator=gen).chunk(config.minibatches):
            head, value, _ = policy(batch.inputs[:, idx], policy.initial_state(len(idx)))
            logp = policy.log_prob(head, batch.actions[:, idx])
            ratio = (logp - batch.logp[:, idx]).exp()
            a = adv[:, idx]
            pg = -torch.min(ratio * a, ratio.clamp(1 - config.clip, 1 + config.clip) * a).mean()
            vl = 0.5 * (value - ret[:, idx]).pow(2).mean()
            ent = policy.entropy(head).mean()
            loss = pg + config.value_coef * vl - entropy_coef * ent
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(policy.parameters(), config.max_grad_norm)
            opt.step()
            kl = (batch.logp[:, idx] - logp).mean().item()
            stats.append((pg.item(), vl.item(), ent.item(), kl))
    m = np.mean(stats, axis=0)
    return UpdateStats(float(m[0]), float(m[1]), float(m[2]), float(m[3]))
