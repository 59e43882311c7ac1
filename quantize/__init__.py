"""Post-training quantisation (installed as edge_sdk.quantize): calibration -> QuantPlan.

The calibration, observers and plan arrive with the quantisation work; the
package exists now so the installed layout is final.
"""
