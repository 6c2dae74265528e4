/* The hardware-abstraction layer: everything the portable firmware needs from a board.
 *
 * A port implements the UARTs and the clock (port/posix: ptys and CLOCK_MONOTONIC; port/mps2: CMSDK
 * UARTs and Timer0). Motor outputs and sensor inputs are HAL calls too; both ports here implement
 * them with mc_bus.c, a motor/sensor bus on the second UART to an emulated plant that steps its
 * physics once per motor write. A real board implements them with its PWM and encoder drivers.
 */
#ifndef MC_HAL_H
#define MC_HAL_H

#include <stddef.h>
#include <stdint.h>

#include "policy.h"

/* Clock: microseconds since start-up, monotonic. */
uint64_t hal_clock_us(void);

/* Host link (UART 0): one received byte if there is one (non-blocking); write all bytes (a line without a
 * listener drops them). */
int hal_host_getc(uint8_t *byte);
void hal_host_write(const uint8_t *data, size_t n);

/* Motor/sensor bus (UART 1), used by mc_bus.c. */
int hal_bus_getc(uint8_t *byte);
void hal_bus_write(const uint8_t *data, size_t n);

/* Bytes of stack used at most since start-up (a painted stack's high-water mark); 0 if the port cannot tell. */
uint32_t hal_stack_used(void);

/* Nothing to do before `until_us` (hal_clock_us time) unless a byte arrives; may return early. */
void hal_idle(uint64_t until_us);

/* What the sensors report after a motor write (or a reset): observations [METACTL_OBS_DIM] as the robot
 * measures them, the reward of that control period and whether the episode must end (e.g. a fall). */
typedef struct {
    float obs[METACTL_OBS_DIM];
    double reward;
    uint8_t done;
} hal_sensors_t;

/* Put the robot at its start pose for an episode with `seed` (an operator on a real robot); 0 on success. */
int hal_robot_reset(uint64_t seed, hal_sensors_t *sensors);

/* Apply `cmd` [METACTL_ACT_DIM] for one control period, then read the sensors; 0 on success, else the bus
 * (or driver) failed and the motors' state is unknown. */
int hal_motors_write(const float *cmd, hal_sensors_t *sensors);

/* Why the last hal_robot_reset / hal_motors_write failed (a constant string, for FAULT messages). */
const char *hal_motors_error(void);

#endif /* MC_HAL_H */
